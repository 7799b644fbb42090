//! A fault-injecting HTTP proxy in front of an emulator.
//!
//! It forwards every request to the real emulator unchanged, except where a
//! rule says otherwise: answer a matching request with an error status (the
//! throttling or access errors a cloud service returns), or go dead, as if
//! the service had stopped: every request from then on has its connection
//! dropped without an answer, until the proxy is healed. It counts requests
//! by operation so a test can see what was retried and what was not resent.
//!
//! This stands in for no service: all answers that are not injected faults
//! come from moto or Azurite, except where a test adds a `Fault::Json` rule,
//! a narrow stub of one operation the emulator lacks, which it names.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What a rule does to the requests it takes.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, error code and message (S3 or Azure XML).
    Status(u16, &'static str),
    /// Go dead: this request and all later ones lose their connection.
    Die,
    /// Forward, then replace this header of the emulator's answer (a
    /// corrupted checksum, say).
    Header(&'static str, &'static str),
    /// Answer with this status and JSON body, as a JSON-protocol service
    /// (SSM) does: a narrow stub of one operation the emulator lacks.
    Json(u16, String),
    /// Hold the request without an answer until the proxy is healed (a
    /// service that hangs), so a test can kill the client mid-transfer.
    Stall,
}

/// Lets `pass` matching requests through, then applies `fault` to the next
/// `times` of them. A request matches by operation and, when `path` is not
/// empty, by a substring of its path (the whole path when it ends in `$`).
#[derive(Debug, Clone)]
pub struct Rule {
    pub op: &'static str,
    pub path: &'static str,
    pub pass: u32,
    pub times: u32,
    pub fault: Fault,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<(&'static str, String)>>,
    dead: AtomicBool,
    healed: AtomicBool,
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

/// The operation a request is, by its method and query: enough to tell the
/// calls the stores make apart.
fn operation(method: &hyper::Method, path: &str, query: &str) -> &'static str {
    let has = |k: &str| query.split('&').any(|p| p.split('=').next() == Some(k));
    let comp = query
        .split('&')
        .find_map(|p| p.strip_prefix("comp="))
        .unwrap_or_default();
    if path.starts_with("/snapshots/") && method == hyper::Method::GET {
        return if path.contains("/blocks/") {
            "GetSnapshotBlock"
        } else if path.ends_with("/blocks") {
            "ListSnapshotBlocks"
        } else {
            "Other"
        };
    }
    match (method.as_str(), comp) {
        ("PUT", "block") => "StageBlock",
        ("PUT", "blocklist") => "CommitBlockList",
        ("PUT", _) if has("partNumber") => "UploadPart",
        ("POST", _) if has("uploads") => "CreateMultipartUpload",
        ("POST", _) if has("uploadId") => "CompleteMultipartUpload",
        ("DELETE", _) if has("uploadId") => "AbortMultipartUpload",
        ("GET", _) if has("uploadId") => "ListParts",
        ("PUT", _) => "Put",
        ("GET", _) => "Get",
        ("HEAD", _) => "Head",
        _ => "Other",
    }
}

/// The operation of a JSON-protocol request (SSM): `X-Amz-Target:
/// AmazonSSM.DescribeInstanceInformation` → `DescribeInstanceInformation`.
/// Names are interned: the proxy counts operations as `&'static str`.
fn json_target(headers: &hyper::HeaderMap) -> Option<&'static str> {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let name = target.rsplit('.').next()?;
    let mut names = NAMES.lock().unwrap();
    if let Some(n) = names.iter().find(|n| **n == name) {
        return Some(n);
    }
    let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(n);
    Some(n)
}

fn json_body(status: u16, body: String) -> Response<BoxBody<Bytes, hyper::Error>> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    r.headers_mut()
        .insert("x-amzn-requestid", "stub-request".parse().unwrap());
    r
}

/// An error answer in the service's own format: JSON for the EBS direct
/// APIs (REST-JSON), XML for S3 and Azure.
fn error_body(status: u16, code: &str, json: bool) -> Response<BoxBody<Bytes, hyper::Error>> {
    let (body, content_type) = if json {
        (
            format!("{{\"__type\":\"{code}\",\"message\":\"injected by the test proxy\"}}"),
            "application/json",
        )
    } else {
        (
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
            ),
            "application/xml",
        )
    };
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    r.headers_mut()
        .insert("x-ms-error-code", code.parse().unwrap());
    // How JSON-protocol services (EBS direct, SSM) name the error.
    r.headers_mut()
        .insert("x-amzn-errortype", code.parse().unwrap());
    r
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port[/path]`) on the
    /// current runtime. Its URL keeps the upstream's path.
    pub async fn start(upstream: &str) -> (Self, String) {
        let up = url::Url::parse(upstream).unwrap();
        let authority = format!(
            "{}:{}",
            up.host_str().unwrap(),
            up.port_or_known_default().unwrap()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, client, authority) = (st.clone(), client.clone(), authority.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (st, client, authority) =
                            (st.clone(), client.clone(), authority.clone());
                        async move { handle(req, &st, &client, &authority).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let mut url = up.clone();
        url.set_port(Some(addr.port())).unwrap();
        let url = url.as_str().trim_end_matches('/').to_owned();
        (Self { addr, state }, url)
    }

    pub fn rule(&self, rule: Rule) {
        self.state.healed.store(false, Ordering::SeqCst);
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Replaces the rules of `rule.op` with `rule`, at once.
    pub fn replace(&self, rule: Rule) {
        let mut rules = self.state.rules.lock().unwrap();
        rules.retain(|r| r.op != rule.op);
        rules.push(rule);
    }

    /// Back to a plain proxy: no rules, not dead, counts kept.
    pub fn heal(&self) {
        self.state.rules.lock().unwrap().clear();
        self.state.dead.store(false, Ordering::SeqCst);
        self.state.healed.store(true, Ordering::SeqCst);
    }

    /// Requests of `op` seen so far (faulted ones included).
    pub fn count(&self, op: &str) -> u32 {
        self.count_on(op, "")
    }

    /// Requests of `op` whose path contains `path`.
    pub fn count_on(&self, op: &str, path: &str) -> u32 {
        let seen = self.state.seen.lock().unwrap();
        seen.iter()
            .filter(|(o, p)| *o == op && p.contains(path))
            .count() as u32
    }

    pub fn reset_counts(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    #[allow(dead_code)]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// An error from the service function makes hyper drop the connection
/// without an answer, as a stopped service would.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the test proxy")
    }
}

impl std::error::Error for Dropped {}

/// A rule's path is a substring of the request's, or with a trailing `$`
/// the whole path (REST services nest one resource's calls under its path).
fn path_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('$') {
        Some(exact) => path == exact,
        None => path.contains(rule),
    }
}

async fn handle(
    req: Request<Incoming>,
    st: &State,
    client: &Client<HttpConnector, Incoming>,
    authority: &str,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Dropped> {
    let op = json_target(req.headers()).unwrap_or_else(|| {
        operation(
            req.method(),
            req.uri().path(),
            req.uri().query().unwrap_or_default(),
        )
    });
    let path = req.uri().path().to_owned();
    st.seen.lock().unwrap().push((op, path.clone()));
    if st.dead.load(Ordering::SeqCst) {
        return Err(Dropped);
    }
    let fault = {
        let mut rules = st.rules.lock().unwrap();
        let mut hit = None;
        for r in rules
            .iter_mut()
            .filter(|r| r.op == op && path_matches(r.path, &path))
        {
            if r.pass > 0 {
                r.pass -= 1;
                break;
            }
            if r.times > 0 {
                r.times -= 1;
                hit = Some(r.fault.clone());
                break;
            }
        }
        hit
    };
    match fault {
        Some(Fault::Die) => {
            st.dead.store(true, Ordering::SeqCst);
            return Err(Dropped);
        }
        Some(Fault::Header(..)) | None => {}
        Some(Fault::Stall) => {
            while !st.healed.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            return Err(Dropped);
        }
        Some(Fault::Json(status, body)) => {
            let _ = req.into_body().collect().await;
            return Ok(json_body(status, body));
        }
        Some(Fault::Status(status, code)) => {
            // Read the body first, as a service does: answering mid-upload
            // would break the connection and turn the error into a retry.
            let _ = req.into_body().collect().await;
            let json = path.starts_with("/snapshots/");
            return Ok(error_body(status, code, json));
        }
    }
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    parts.uri = format!("http://{authority}{path}").parse().unwrap();
    match client.request(Request::from_parts(parts, body)).await {
        Ok(mut resp) => {
            if let Some(Fault::Header(name, value)) = fault {
                resp.headers_mut().insert(name, value.parse().unwrap());
            }
            Ok(resp.map(|b| b.boxed()))
        }
        Err(_) => Err(Dropped),
    }
}
