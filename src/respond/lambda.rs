//! Reversible isolation of a Lambda function: reserved concurrency 0, so
//! no invocation runs (every trigger is throttled, queued events wait in
//! their source), while the function, its versions and its code stay as
//! they are for acquisition. The prior reserved concurrency is recorded
//! first; [`release`] puts it back (or removes the reservation when there
//! was none).

use aws_sdk_lambda::operation::RequestId;
use serde::{Deserialize, Serialize};

use crate::aws::ApiError;

/// What isolation changes, as it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionState {
    /// The function's ARN (unqualified).
    pub function: String,
    /// `None`: no reservation (the account's unreserved pool).
    pub reserved_concurrency: Option<i32>,
}

/// The function's ARN and reserved concurrency now.
pub async fn describe(l: &aws_sdk_lambda::Client, f: &str) -> Result<FunctionState, ApiError> {
    let got = l
        .get_function_configuration()
        .function_name(f)
        .send()
        .await
        .map_err(|e| ApiError::sdk("describe the Lambda function", f, e))?;
    let arn = got.function_arn().unwrap_or(f);
    // An ARN read back may carry `:$LATEST`; the reservation is the function's.
    let arn = match arn.matches(':').count() {
        7 => arn.rsplit_once(':').map_or(arn, |(a, _)| a),
        _ => arn,
    }
    .to_owned();
    let c = l
        .get_function_concurrency()
        .function_name(f)
        .send()
        .await
        .map_err(|e| ApiError::sdk("read the reserved concurrency of", f, e))?;
    Ok(FunctionState {
        function: arn,
        reserved_concurrency: c.reserved_concurrent_executions(),
    })
}

/// What one call did, and the request id AWS gave it.
pub type Done = (String, Vec<String>);

fn rid(o: Option<&str>) -> Vec<String> {
    o.map(str::to_owned).into_iter().collect()
}

pub async fn isolate(l: &aws_sdk_lambda::Client, f: &FunctionState) -> Result<Done, ApiError> {
    let out = l
        .put_function_concurrency()
        .function_name(&f.function)
        .reserved_concurrent_executions(0)
        .send()
        .await
        .map_err(|e| ApiError::sdk("set reserved concurrency 0 on", &f.function, e))?;
    Ok(("reserved concurrency 0".into(), rid(out.request_id())))
}

pub async fn release(l: &aws_sdk_lambda::Client, prior: &FunctionState) -> Result<Done, ApiError> {
    let f = &prior.function;
    Ok(match prior.reserved_concurrency {
        Some(n) => {
            let out = l
                .put_function_concurrency()
                .function_name(f)
                .reserved_concurrent_executions(n)
                .send()
                .await
                .map_err(|e| ApiError::sdk("restore the reserved concurrency of", f, e))?;
            (format!("reserved concurrency {n}"), rid(out.request_id()))
        }
        None => {
            let out = l
                .delete_function_concurrency()
                .function_name(f)
                .send()
                .await
                .map_err(|e| ApiError::sdk("remove the reserved concurrency of", f, e))?;
            ("no reserved concurrency".into(), rid(out.request_id()))
        }
    })
}
