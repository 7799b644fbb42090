//! One engine for every provider's checks: the table from each check id
//! declared in `readiness_checks/` to the code that evaluates it, and the
//! evaluation of a provider's checks in catalogue order.
//!
//! Adding a check:
//!
//! 1. declare it in `readiness_checks/<provider>.toml`, and list it in that
//!    folder's README;
//! 2. write its evaluation in its service's file: `aws.<service>.<name>` is
//!    `aws/checks/<service>.rs`'s `async fn <name>(at: At) -> Findings`
//!    (a new service is a new file there); an Azure container check is a
//!    function of the container's facts in `azure.rs`;
//! 3. add its row to `CHECKS`: the id, and for AWS where it runs (once
//!    from the home region, once for IAM, or in every audited region).
//!
//! A test keeps the table and the catalogue in step: it fails naming any id
//! declared without a row (unless declared `not_evaluable_here`) and any
//! row without a declaration.
//!
//! Before anything is asked, a check declared `not_evaluable_here` reports
//! SKIPPED with the declared reason.

use futures::future::join_all;

use super::aws::Ctx;
use super::aws::checks::{
    autoscaling, cloudtrail, config, ebs, ec2, guardduty, iam, kms, s3, securityhub, ssm, vpc,
};
use super::aws::runner::{AwsCheck, Place};
use super::azure::{self, AzureCheck};
use super::catalogue::{Catalogue, CheckDef, Provider};
use super::{Finding, Status};
use crate::store::azure_blob::{AzureBlobStore, ContainerFacts};

/// How a check is evaluated.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Eval {
    Aws(AwsCheck),
    Azure(AzureCheck),
}

/// An AWS row: where the check runs, and its `async fn` (boxed, so every
/// check has the one type the table holds).
macro_rules! aws {
    ($place:ident, $check:path) => {
        Eval::Aws(AwsCheck {
            place: Place::$place,
            evaluate: |at| Box::pin($check(at)),
        })
    };
}

/// Every check this build evaluates, by id (sorted). A run's findings
/// follow the catalogue's order, not this one.
#[rustfmt::skip]
pub(crate) static CHECKS: &[(&str, Eval)] = &[
    ("aws.autoscaling.evidence_preserving",    aws!(Regional, autoscaling::evidence_preserving)),
    ("aws.cloudtrail.bucket_tamper_resistant", aws!(Home,     cloudtrail::bucket_tamper_resistant)),
    ("aws.cloudtrail.delivering",              aws!(Home,     cloudtrail::delivering)),
    ("aws.cloudtrail.log_file_validation",     aws!(Home,     cloudtrail::log_file_validation)),
    ("aws.cloudtrail.multi_region",            aws!(Home,     cloudtrail::multi_region)),
    ("aws.cloudtrail.retention",               aws!(Home,     cloudtrail::retention)),
    ("aws.config.recorder",                    aws!(Regional, config::recorder)),
    ("aws.ebs.default_encryption",             aws!(Regional, ebs::default_encryption)),
    ("aws.ebs.direct_reachable",               aws!(Regional, ebs::direct_reachable)),
    ("aws.ebs.snapshot_quota",                 aws!(Regional, ebs::snapshot_quota)),
    ("aws.ec2.imdsv2_required",                aws!(Regional, ec2::imdsv2_required)),
    ("aws.ec2.isolation_group",                aws!(Regional, ec2::isolation_group)),
    ("aws.guardduty.enabled",                  aws!(Regional, guardduty::enabled)),
    ("aws.iam.forensic_role",                  aws!(Global,   iam::forensic_role)),
    ("aws.iam.forensic_role_permissions",      aws!(Global,   iam::forensic_role_permissions)),
    ("aws.iam.forensic_role_trust",            aws!(Global,   iam::forensic_role_trust)),
    ("aws.kms.keys_enabled",                   aws!(Regional, kms::keys_enabled)),
    ("aws.kms.volume_keys_usable",             aws!(Regional, kms::volume_keys_usable)),
    ("aws.s3.access_logging",                  aws!(Home,     s3::access_logging)),
    ("aws.s3.evidence_bucket",                 aws!(Home,     s3::evidence_bucket)),
    ("aws.securityhub.enabled",                aws!(Regional, securityhub::enabled)),
    ("aws.ssm.instances_managed",              aws!(Regional, ssm::instances_managed)),
    ("aws.vpc.flow_logs",                      aws!(Regional, vpc::flow_logs)),
    ("azure.blob.evidence_immutable",          Eval::Azure(azure::evidence_immutable)),
    ("azure.blob.evidence_private",            Eval::Azure(azure::evidence_private)),
    ("azure.blob.soft_delete",                 Eval::Azure(azure::soft_delete)),
];

/// For a declared check without a row: only a catalogue newer than the
/// code could have one, and the test below keeps that from shipping.
const NOT_YET: &str = "this version of custody does not evaluate this check yet";

/// The row of `id`.
fn evaluation(id: &str) -> Option<&'static Eval> {
    CHECKS.iter().find(|(row, _)| *row == id).map(|(_, e)| e)
}

/// The checks of `provider`, or of them those in `only`, in catalogue order.
fn selected<'c>(
    catalogue: &'c Catalogue,
    provider: Provider,
    only: &[String],
) -> Vec<&'c CheckDef> {
    catalogue
        .checks
        .iter()
        .filter(|c| c.provider == provider)
        .filter(|c| only.is_empty() || only.iter().any(|o| o == &c.id))
        .collect()
}

/// Evaluates every AWS check of `catalogue` (or those in `only`), in
/// catalogue order.
pub async fn evaluate_aws(ctx: &Ctx, catalogue: &Catalogue, only: &[String]) -> Vec<Finding> {
    let defs = selected(catalogue, Provider::Aws, only);
    // Checks are independent: run them together, keep catalogue order.
    let results = join_all(defs.iter().map(|d| aws_findings(ctx, d))).await;
    let mut out = Vec::new();
    for (def, findings) in defs.iter().zip(results) {
        if findings.is_empty() {
            out.push(ctx.finding(
                def,
                &ctx.home,
                "-",
                Status::Skipped,
                "nothing to evaluate in the audited regions",
            ));
        }
        out.extend(findings);
    }
    out
}

async fn aws_findings(ctx: &Ctx, def: &CheckDef) -> Vec<Finding> {
    let skipped = |why: String| vec![ctx.finding(def, &ctx.home, "-", Status::Skipped, why)];
    if let Some(why) = &def.not_evaluable_here {
        return skipped(why.clone());
    }
    match evaluation(&def.id) {
        Some(Eval::Aws(check)) => check.run(ctx, def).await,
        _ => skipped(NOT_YET.into()),
    }
}

/// Evaluates the Azure checks of `catalogue` (or those in `only`) against
/// `store`, the evidence container, when one is given: its facts are read
/// once, and each check judges them.
pub async fn evaluate_azure(
    store: Option<&AzureBlobStore>,
    catalogue: &Catalogue,
    only: &[String],
) -> Vec<Finding> {
    let defs = selected(catalogue, Provider::Azure, only);
    let account = store.map_or("-", AzureBlobStore::account).to_owned();
    let container = store.map_or("-", AzureBlobStore::container).to_owned();
    let facts = match store {
        Some(s) => Some(s.facts().await.map_err(|e| crate::error_chain(&e))),
        None => None,
    };
    defs.iter()
        .map(|def| {
            let (status, evidence) = azure_verdict(def, facts.as_ref());
            Finding::new(&def.id, &account, "-", &container, status, evidence)
        })
        .collect()
}

fn azure_verdict(
    def: &CheckDef,
    facts: Option<&Result<ContainerFacts, String>>,
) -> (Status, String) {
    if let Some(why) = &def.not_evaluable_here {
        return (Status::Skipped, why.clone());
    }
    let facts = match facts {
        None => {
            return (
                Status::Skipped,
                "no evidence container given (--azure-container)".into(),
            );
        }
        Some(Err(e)) => return (Status::Error, e.clone()),
        Some(Ok(x)) => x,
    };
    match evaluation(&def.id) {
        Some(Eval::Azure(check)) => check(facts, def),
        _ => (Status::Skipped, NOT_YET.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(eval: &Eval) -> Provider {
        match eval {
            Eval::Aws(_) => Provider::Aws,
            Eval::Azure(_) => Provider::Azure,
        }
    }

    /// What keeps `table` and the declared checks from agreeing, one line
    /// naming the id each.
    fn out_of_step(declared: &[CheckDef], table: &[(&str, Eval)]) -> Vec<String> {
        let mut problems = Vec::new();
        for def in declared {
            let rows: Vec<&Eval> = table
                .iter()
                .filter(|(id, _)| *id == def.id)
                .map(|(_, e)| e)
                .collect();
            let file = format!("readiness_checks/{}.toml", def.provider.as_str());
            match (rows.as_slice(), &def.not_evaluable_here) {
                ([], None) => problems.push(format!(
                    "{}: declared in {file} but has no row in engine::CHECKS",
                    def.id
                )),
                ([], Some(_)) => {}
                ([_], Some(_)) => problems.push(format!(
                    "{}: declared not_evaluable_here in {file}, yet has a row in engine::CHECKS",
                    def.id
                )),
                ([eval], None) if provider(eval) != def.provider => problems.push(format!(
                    "{}: declared in {file} but its row is a {} evaluation",
                    def.id,
                    provider(eval).as_str()
                )),
                ([_], None) => {}
                _ => problems.push(format!("{}: {} rows in engine::CHECKS", def.id, rows.len())),
            }
        }
        for (id, _) in table {
            if !declared.iter().any(|d| d.id == *id) {
                problems.push(format!(
                    "{id}: a row in engine::CHECKS, but no check of that id in readiness_checks/"
                ));
            }
        }
        problems
    }

    #[test]
    fn every_declared_check_has_a_row_and_every_row_a_declaration() {
        let catalogue = Catalogue::builtin().expect("the built-in catalogue");
        let problems = out_of_step(&catalogue.checks, CHECKS);
        assert!(
            problems.is_empty(),
            "the table and readiness_checks/ disagree:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn a_missing_row_or_declaration_is_named() {
        let catalogue = Catalogue::builtin().expect("the built-in catalogue");
        let rows_but_one: Vec<(&str, Eval)> = CHECKS
            .iter()
            .filter(|(id, _)| *id != "aws.vpc.flow_logs")
            .copied()
            .collect();
        assert_eq!(
            out_of_step(&catalogue.checks, &rows_but_one),
            [
                "aws.vpc.flow_logs: declared in readiness_checks/aws.toml but has no row in engine::CHECKS"
            ]
        );
        let declared_but_one: Vec<CheckDef> = catalogue
            .checks
            .iter()
            .filter(|c| c.id != "azure.blob.soft_delete")
            .cloned()
            .collect();
        assert_eq!(
            out_of_step(&declared_but_one, CHECKS),
            [
                "azure.blob.soft_delete: a row in engine::CHECKS, but no check of that id in readiness_checks/"
            ]
        );
        let mut declared = catalogue.checks.clone();
        for c in &mut declared {
            if c.id == "aws.ebs.snapshot_quota" {
                c.not_evaluable_here = Some("no quota service".into());
            }
            if c.id == "azure.blob.versioning" {
                c.not_evaluable_here = None;
            }
        }
        assert_eq!(
            out_of_step(&declared, CHECKS),
            [
                "aws.ebs.snapshot_quota: declared not_evaluable_here in readiness_checks/aws.toml, yet has a row in engine::CHECKS",
                "azure.blob.versioning: declared in readiness_checks/azure.toml but has no row in engine::CHECKS",
            ]
        );
    }
}
