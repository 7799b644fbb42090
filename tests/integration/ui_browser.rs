//! The workspace in a real headless Chromium: an analyst signs in, opens a
//! case, filters by a facet (and excludes one with alt-click), brushes the
//! histogram, saves a search, stars and comments an event and downloads an
//! artefact; each action's ledger entry is then there and the ledger
//! verifies. A hostile record runs nothing, and axe-core finds no serious
//! violation on the main pages.

use std::time::Duration;

use crate::browser::{Browser, Impact};
use crate::common::{Home, stderr};
use crate::ui::{PASSWORD, analysts_config, seed_case, start};

const WAIT: Duration = Duration::from_secs(10);

fn ledger_actions(home: &Home) -> Vec<serde_json::Value> {
    std::fs::read_to_string(home.path().join("ledger/entries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the page's `#total` says `n` events.
async fn total_is(b: &Browser, n: u64) {
    let want = n.to_string();
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(e) = b.find("#total").await {
            last = e.text().await.unwrap_or_default();
            if last == want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the page shows {last:?} events, not {want} ({})",
        b.current_url().await.unwrap_or_default()
    );
}

async fn serious(b: &Browser, page: &str) {
    let found: Vec<_> = b
        .axe(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.impact >= Impact::Serious)
        .collect();
    assert!(
        found.is_empty(),
        "{page}: {}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[tokio::test]
async fn an_analyst_investigates_in_the_browser_and_every_action_is_on_the_record() {
    let home = Home::new();
    seed_case(&home);
    let config = analysts_config(&home);
    let ws = start(&home, Some(&config));
    let base = format!("http://{}", ws.addr);
    let b = Browser::start().await;

    // Sign in.
    b.goto(&format!("{base}/cases/web")).await.unwrap();
    assert!(b.current_url().await.unwrap().ends_with("/login"));
    serious(&b, "sign-in").await;
    b.find("#name")
        .await
        .unwrap()
        .send_keys("ines")
        .await
        .unwrap();
    b.find("#password")
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    b.find("form.login button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("table.cases", WAIT).await.unwrap();
    let cookies = b.cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name == "custody_session")
        .expect("a session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    assert_eq!(b.execute("return document.cookie;", &[]).await.unwrap(), "");
    serious(&b, "cases").await;

    // Open the case, then its timeline.
    b.find("a[href='/cases/web']")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("table.artefacts", WAIT).await.unwrap();
    serious(&b, "overview").await;
    // The evidence page, its entries and their proofs.
    b.find("a[href='/cases/web/evidence']")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("table.entries a[href$='/proof']", WAIT)
        .await
        .unwrap();
    serious(&b, "evidence").await;
    for (path, name) in [("/jobs", "jobs"), ("/readiness", "readiness")] {
        b.goto(&format!("{base}{path}")).await.unwrap();
        b.wait_for("main h1", WAIT).await.unwrap();
        serious(&b, name).await;
    }
    b.goto(&format!("{base}/cases/web")).await.unwrap();
    b.find("a[href^='/cases/web/timeline']")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    total_is(&b, 3).await;
    serious(&b, "explorer").await;

    // A hostile record's values ran nothing.
    assert_eq!(b.title().await.unwrap(), "Timeline of web · custody");
    let planted = b
        .execute(
            "return document.querySelectorAll('main img, main svg[onload], main script').length;",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(planted, 0);

    // Facets: a click keeps a value, an alt-click excludes it.
    let facet = "section[aria-label='facet action'] a.facet-value";
    let values = b.find_all(facet).await.unwrap();
    let mut create = None;
    for v in values {
        if v.text().await.unwrap() == "CreateUser" {
            create = Some(v);
        }
    }
    create
        .expect("CreateUser in the action facet")
        .click()
        .await
        .unwrap();
    total_is(&b, 1).await;
    assert!(b.current_url().await.unwrap().contains("CreateUser"));
    b.back().await.unwrap();
    total_is(&b, 3).await;
    let first = b.find(facet).await.unwrap();
    let excluded = first.text().await.unwrap();
    b.alt_click(&first).await.unwrap();
    total_is(&b, 2).await;
    let q = b.find("#q").await.unwrap().property("value").await.unwrap();
    assert_eq!(q, format!("-action:\"{excluded}\""));

    // The histogram's brush: the first 5 minutes hold one event of the 3.
    b.goto(&format!("{base}/cases/web/timeline?q="))
        .await
        .unwrap();
    total_is(&b, 3).await;
    let hist = b.find("#histogram").await.unwrap();
    let width = hist.rect().await.unwrap().width as i64;
    // Buckets of a minute over 10 minutes: 11 slots; a drag over the first
    // three holds 08:00 and 08:02, so only the first sign-in.
    b.drag(&hist, 1, width * 3 / 11 - 2).await.unwrap();
    total_is(&b, 1).await;
    let q = b.find("#q").await.unwrap().property("value").await.unwrap();
    let q = q.as_str().unwrap().to_owned();
    assert!(
        q.contains("after:2024-06-01T08:00:00") && q.contains("before:"),
        "{q}"
    );

    // Save it.
    b.find("#save-name")
        .await
        .unwrap()
        .send_keys("first-minutes")
        .await
        .unwrap();
    b.find("form.save button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("section.saved a[title]", WAIT).await.unwrap();
    let saved = b
        .find("section.saved li")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(saved, "first-minutes 1");

    // Star and comment the event.
    b.find("table.rows td.mono a")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("dl.fields", WAIT).await.unwrap();
    serious(&b, "event").await;
    b.find("#star").await.unwrap().click().await.unwrap();
    b.wait_for("h1 span.star", WAIT).await.unwrap();
    b.find("#comment")
        .await
        .unwrap()
        .send_keys("sign-in before the user was created <b>check</b>")
        .await
        .unwrap();
    b.find("form.mark textarea + button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("ul.marks li span.value", WAIT).await.unwrap();
    let comment = b
        .find("ul.marks li span.value")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(comment, "sign-in before the user was created <b>check</b>");

    // Download the artefact from the overview.
    b.goto(&format!("{base}/cases/web")).await.unwrap();
    b.find("table.artefacts button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut exported = 0;
    for _ in 0..100 {
        exported = ledger_actions(&home)
            .iter()
            .filter(|e| e["action"] == "exported")
            .count();
        if exported > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(exported, 1, "the download's entry");

    // Each action is an entry naming the analyst; the ledger verifies.
    let entries = ledger_actions(&home);
    let mine: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["actor"]["role"] == "analyst")
        .map(|e| {
            (
                e["actor"]["name"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        [
            ("ines", "search_saved"),
            ("ines", "annotated"),
            ("ines", "annotated"),
            ("ines", "exported"),
        ]
    );
    drop(b);
    drop(ws);
    let verify = home.run(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}
