//! Sign-in through an OpenID Connect provider. The provider here is a
//! small one of the test's own on 127.0.0.1 (discovery, published keys,
//! a token endpoint that checks PKCE and the client secret), signing its
//! ID tokens with Ed25519; the test plays the browser. Each way a sign-in
//! can be forged or replayed is tried and refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::json;
use sha2::Digest as _;

use crate::common::{Home, listening};
use crate::ui::{Reply, http, seed_case};

const CLIENT: &str = "custody-workspace";
const SECRET: &str = "client-secret-of-the-test";
const REDIRECT: &str = "http://127.0.0.1/login/oidc/callback";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// What the provider answers for one code: the ID token's claims and the
/// key it is signed with (the published one, or another).
struct Grant {
    challenge: String,
    id_token: String,
}

struct Provider {
    issuer: String,
    key: SigningKey,
    grants: Mutex<HashMap<String, Grant>>,
}

impl Provider {
    /// Serves discovery, the keys and the token endpoint until the test ends.
    fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = Arc::new(Self {
            issuer: format!("http://{}", listener.local_addr().unwrap()),
            key: SigningKey::from_bytes(&[7; 32]),
            grants: Mutex::new(HashMap::new()),
        });
        let served = p.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let p = served.clone();
                std::thread::spawn(move || p.answer(s));
            }
        });
        p
    }

    fn answer(&self, mut s: std::net::TcpStream) {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let (status, reply) = match path.as_str() {
            "/.well-known/openid-configuration" => (
                200,
                serde_json::json!({
                    "issuer": self.issuer,
                    "authorization_endpoint": format!("{}/authorize", self.issuer),
                    "token_endpoint": format!("{}/token", self.issuer),
                    "jwks_uri": format!("{}/keys", self.issuer),
                }),
            ),
            "/keys" => (
                200,
                serde_json::json!({ "keys": [{
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "k1",
                    "x": b64(self.key.verifying_key().as_bytes()),
                }]}),
            ),
            "/token" => self.token(&body),
            _ => (404, serde_json::json!({})),
        };
        let body = reply.to_string();
        let _ = write!(
            s,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    /// The token endpoint: the code once, with its PKCE verifier and the
    /// client's secret.
    fn token(&self, body: &[u8]) -> (u16, serde_json::Value) {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let refuse = |e: &str| (400, serde_json::json!({ "error": e }));
        if form.get("client_id").map(String::as_str) != Some(CLIENT)
            || form.get("client_secret").map(String::as_str) != Some(SECRET)
        {
            return refuse("invalid_client");
        }
        if form.get("redirect_uri").map(String::as_str) != Some(REDIRECT) {
            return refuse("invalid_grant");
        }
        let Some(grant) = form
            .get("code")
            .and_then(|c| self.grants.lock().unwrap().remove(c))
        else {
            return refuse("invalid_grant");
        };
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        if b64(&sha2::Sha256::digest(verifier.as_bytes())) != grant.challenge {
            return refuse("invalid_grant");
        }
        (
            200,
            serde_json::json!({ "id_token": grant.id_token, "token_type": "Bearer" }),
        )
    }

    /// A signed ID token with `claims` over the usual ones.
    fn id_token(
        &self,
        header: serde_json::Value,
        claims: serde_json::Value,
        key: &SigningKey,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut c = serde_json::json!({
            "iss": self.issuer, "aud": CLIENT, "iat": now, "exp": now + 300,
        });
        for (k, v) in claims.as_object().unwrap() {
            c[k] = v.clone();
        }
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        );
        let sig = key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&sig.to_bytes()))
    }
}

/// A sign-in started at the workspace: the state cookie and what the
/// browser is sent to the provider with.
struct Started {
    cookie: String,
    state: String,
    nonce: String,
    challenge: String,
}

fn begin(addr: &str, provider: &Provider) -> Started {
    let r = http(addr, "GET", "/login/oidc", &[], "");
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("custody_oidc="))
        .expect("a state cookie")
        .to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    let to = url::Url::parse(r.header("location").unwrap()).unwrap();
    assert_eq!(
        to.as_str().split('?').next().unwrap(),
        format!("{}/authorize", provider.issuer)
    );
    let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["code_challenge_method"], "S256");
    Started {
        cookie: r.cookie("custody_oidc").unwrap(),
        state: q["state"].clone(),
        nonce: q["nonce"].clone(),
        challenge: q["code_challenge"].clone(),
    }
}

/// The provider grants `code` with `id_token`; the browser comes back.
fn come_back(
    addr: &str,
    provider: &Provider,
    s: &Started,
    id_token: String,
    cookie: Option<&str>,
) -> Reply {
    let code = format!("code-{}", s.state);
    provider.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: s.challenge.clone(),
            id_token,
        },
    );
    let path = format!("/login/oidc/callback?state={}&code={code}", s.state);
    let headers: Vec<(&str, String)> = cookie
        .map(|c| ("Cookie", c.to_owned()))
        .into_iter()
        .collect();
    http(addr, "GET", &path, &headers, "")
}

fn config(home: &Home, issuer: &str) -> std::path::PathBuf {
    let path = home.path().join("ui-oidc.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[ui]
session_hours = 1

[ui.oidc]
issuer = "{issuer}"
client_id = "{CLIENT}"
client_secret_env = "TEST_OIDC_SECRET"
redirect_url = "{REDIRECT}"
label = "the test provider"

[[ui.analysts]]
name = "ines"
role = "investigator"
oidc_email = "ines@example.org"

[[ui.analysts]]
name = "rory"
role = "read_only"
oidc_subject = "idp-rory"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_analyst_signs_in_at_the_provider_and_a_forged_or_replayed_sign_in_is_refused() {
    let home = Home::new();
    seed_case(&home);
    let provider = Provider::start();
    let cfg = config(&home, &provider.issuer);
    let mut cmd = home.cmd();
    cmd.env("TEST_OIDC_SECRET", SECRET)
        .args(["ui", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg);
    let ws = listening(&mut cmd);
    let a = ws.addr.as_str();
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": "k1" });

    // The sign-in page offers the provider beside the password form.
    let page = http(a, "GET", "/login", &[], "");
    assert!(page.body.contains("href=\"/login/oidc\""), "{}", page.body);
    assert!(page.body.contains("Sign in with the test provider"));

    // By verified email: a session for ines, the investigator.
    let s = begin(a, &provider);
    let token = provider.id_token(
        header.clone(),
        serde_json::json!({ "sub": "idp-ines", "email": "Ines@Example.org", "email_verified": true, "nonce": s.nonce }),
        &provider.key,
    );
    let r = come_back(a, &provider, &s, token.clone(), Some(&s.cookie));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("http-equiv=\"refresh\""), "{}", r.body);
    let set = r
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("custody_session="))
        .expect("a session")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    assert!(
        r.cookies()
            .iter()
            .any(|c| c.starts_with("custody_oidc=;") && c.contains("Max-Age=0")),
        "the state cookie is cleared: {:?}",
        r.cookies()
    );
    let session = r.cookie("custody_session").unwrap();
    let home_page = http(a, "GET", "/", &[("Cookie", session.clone())], "");
    assert_eq!(home_page.status, 200);
    assert!(
        home_page.body.contains("ines (investigator)"),
        "{}",
        home_page.body
    );

    // The same state and code again: the state was good once.
    let again = come_back(a, &provider, &s, token, Some(&s.cookie));
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.body.contains("state"), "{}", again.body);
    assert!(again.cookie("custody_session").is_none());

    // By subject: rory, read-only, whatever email the provider gives.
    let s = begin(a, &provider);
    let token = provider.id_token(
        header.clone(),
        serde_json::json!({ "sub": "idp-rory", "nonce": s.nonce }),
        &provider.key,
    );
    let r = come_back(a, &provider, &s, token, Some(&s.cookie));
    assert_eq!(r.status, 200, "{}", r.body);
    let rory = r.cookie("custody_session").unwrap();
    let p = http(a, "GET", "/", &[("Cookie", rory)], "");
    assert!(p.body.contains("rory (read-only)"), "{}", p.body);

    // Each forgery gets a 403 naming what was wrong, and no session.
    let other_key = SigningKey::from_bytes(&[9; 32]);
    let rory = |extra: serde_json::Value| {
        let mut c = serde_json::json!({ "sub": "idp-rory" });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // (what the refusal names, the token's header, its claims (this
    // sign-in's nonce unless they name one), its key, the state cookie sent)
    let forgeries = [
        // Another browser's callback: without the state cookie.
        (
            "state",
            header.clone(),
            rory(json!({})),
            &provider.key,
            false,
        ),
        (
            "signature",
            header.clone(),
            rory(json!({})),
            &other_key,
            true,
        ),
        (
            "nonce",
            header.clone(),
            rory(json!({ "nonce": "another sign-in's" })),
            &provider.key,
            true,
        ),
        (
            "audience",
            header.clone(),
            rory(json!({ "aud": "another-client" })),
            &provider.key,
            true,
        ),
        (
            "issuer",
            header.clone(),
            rory(json!({ "iss": "https://elsewhere.example" })),
            &provider.key,
            true,
        ),
        (
            "expired",
            header.clone(),
            rory(json!({ "exp": 1_600_000_000u64, "iat": 1_599_999_000u64 })),
            &provider.key,
            true,
        ),
        // An email the provider has not verified names nobody; nor does one nobody has.
        (
            "not an analyst",
            header.clone(),
            json!({ "sub": "x", "email": "ines@example.org", "email_verified": false }),
            &provider.key,
            true,
        ),
        (
            "not an analyst",
            header.clone(),
            json!({ "sub": "m", "email": "mallory@example.org", "email_verified": true }),
            &provider.key,
            true,
        ),
        // Unsigned, and signed with a shared secret: refused by algorithm.
        (
            "algorithm",
            json!({ "alg": "none", "typ": "JWT" }),
            rory(json!({})),
            &provider.key,
            true,
        ),
        (
            "algorithm",
            json!({ "alg": "HS256", "typ": "JWT", "kid": "k1" }),
            rory(json!({})),
            &provider.key,
            true,
        ),
    ];
    for (what, head, mut claims, key, with_cookie) in forgeries {
        let s = begin(a, &provider);
        if claims.get("nonce").is_none() {
            claims["nonce"] = json!(s.nonce);
        }
        let token = provider.id_token(head, claims, key);
        let cookie = with_cookie.then_some(s.cookie.as_str());
        let r = come_back(a, &provider, &s, token, cookie);
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("Not signed in"), "{what}: {}", r.body);
        assert!(r.body.contains(what), "{what}: {}", r.body);
        assert!(r.cookie("custody_session").is_none(), "{what}");
    }

    // The provider's own refusal is passed on, as text.
    let s = begin(a, &provider);
    let r = http(
        a,
        "GET",
        &format!(
            "/login/oidc/callback?state={}&error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E",
            s.state
        ),
        &[("Cookie", s.cookie.clone())],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("access_denied: &lt;b&gt;no&lt;/b&gt;"),
        "{}",
        r.body
    );
}

#[test]
fn a_provider_configuration_that_could_admit_nobody_or_leak_is_refused_at_start() {
    let home = Home::new();
    let write = |text: &str| {
        let p = home.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        p
    };
    let analyst = "[[ui.analysts]]\nname = \"ines\"\nrole = \"investigator\"\noidc_email = \"ines@example.org\"\n";
    let provider = |issuer: &str, extra: &str| {
        format!(
            "[ui.oidc]\nissuer = \"{issuer}\"\nclient_id = \"c\"\nredirect_url = \"https://ws.example/login/oidc/callback\"\n{extra}\n"
        )
    };
    for (text, says) in [
        // An analyst who could only sign in at a provider that is not configured.
        (format!("[ui]\n{analyst}"), "no [ui.oidc] provider"),
        // A provider over plain http to another machine.
        (
            format!("[ui]\n{}{analyst}", provider("http://idp.example.org", "")),
            "https URL",
        ),
        // A secret variable that is not set.
        (
            format!(
                "[ui]\n{}{analyst}",
                provider(
                    "https://idp.example.org",
                    "client_secret_env = \"TEST_OIDC_UNSET\""
                )
            ),
            "TEST_OIDC_UNSET",
        ),
        // A provider nobody is configured to sign in through.
        (
            format!(
                "[ui]\n{}[[ui.analysts]]\nname = \"x\"\nrole = \"read_only\"\ntoken_sha256 = \"{}\"\n",
                provider("https://idp.example.org", ""),
                "0".repeat(64)
            ),
            "no analyst has an oidc_subject",
        ),
    ] {
        let path = write(&text);
        let out = home
            .cmd()
            .env_remove("TEST_OIDC_UNSET")
            .args(["ui", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = crate::common::stderr(&out);
        assert!(err.contains(says), "{says} not in {err}");
    }
}
