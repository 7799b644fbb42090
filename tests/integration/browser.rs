//! A real headless Chromium driven over WebDriver, and axe-core to check
//! the pages it shows for accessibility: what the browser UI tests stand on.
//!
//! [`Browser::start`] runs chromedriver on a free loopback port and opens a
//! session in a browser of its own, with a fresh profile, that reaches
//! loopback and nothing else ([`chrome_args`] says how). The client speaks
//! the W3C WebDriver protocol as JSON over HTTP; every call returns a
//! [`BrowserError`] that carries the driver's own message. Dropping the
//! [`Browser`] closes the session and kills chromedriver's process group,
//! the browser with it.
//!
//! `scripts/test` installs Chromium, chromedriver and axe-core
//! (`install_browser` in scripts/browser.sh) and exports their paths:
//! `CUSTODY_TEST_CHROMIUM`, `CUSTODY_TEST_CHROMEDRIVER`, `CUSTODY_TEST_AXE`.
//! Without them a browser test fails, naming what is missing: a browser test
//! that skipped would hide a broken UI.
//!
//! ```ignore
//! let browser = Browser::start().await;
//! browser.goto(&format!("http://{addr}/")).await?;
//! browser.find("#case").await?.send_keys("case-7").await?;
//! browser.find("#open").await?.click().await?;
//! browser.wait_for("#timeline", Duration::from_secs(5)).await?;
//! let serious: Vec<_> = browser.axe(None).await?.into_iter()
//!     .filter(|v| v.impact >= Impact::Serious).collect();
//! ```
//!
//! The tests at the end serve a small page with the Content-Security-Policy
//! the UI sends (no inline script) and prove each part of the harness on it.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};

/// The key under which WebDriver names an element (W3C WebDriver, "Elements").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The WebDriver key code of Alt (W3C WebDriver, "Keyboard actions").
const ALT: &str = "\u{E00A}";
/// How long chromedriver and its browser get to start: a cold start on a
/// loaded 2-core machine takes a few seconds.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The session's page-load and script timeouts, in milliseconds.
const PAGE_TIMEOUT_MS: u64 = 30_000;
/// Longer than [`PAGE_TIMEOUT_MS`]: the driver's own timeout error, which
/// says what timed out, arrives before this one.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the drop waits for chromedriver to close the browser before
/// killing both.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two looks for an element in [`Browser::wait_for`].
const POLL: Duration = Duration::from_millis(50);
/// The moves of a drag, a frame (about 16 ms) apart so none is coalesced:
/// the driver sends one event per move, and code that follows the pointer
/// (a brush drawn as it goes) should see it travel, not jump.
const DRAG_STEPS: i64 = 8;
const DRAG_STEP_MS: u64 = 20;

/// What a call to the browser can fail with. Each names the command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// The driver answered with a WebDriver error.
    #[error("{command}: {error}: {message}")]
    WebDriver {
        command: String,
        /// The W3C error code (`no such element`, `javascript error`...).
        error: String,
        message: String,
    },
    #[error("{command}: chromedriver could not be reached")]
    Transport {
        command: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{command}: no answer from chromedriver in {COMMAND_TIMEOUT:?}")]
    Timeout { command: String },
    /// An answer that is not what the protocol says it should be.
    #[error("{command}: unexpected answer: {detail}")]
    Protocol { command: String, detail: String },
    #[error("no element matches `{css}` after {waited:?}")]
    NotFound { css: String, waited: Duration },
    #[error("axe-core: {0}")]
    Axe(String),
}

impl BrowserError {
    /// The W3C error code, when the driver sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::WebDriver { error, .. } => Some(error),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, BrowserError>;

/// A cookie as the browser holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub http_only: bool,
    #[serde(default)]
    pub secure: bool,
    /// `Strict`, `Lax` or `None`.
    #[serde(default)]
    pub same_site: Option<String>,
}

/// How much an accessibility violation hurts, in axe-core's words; ordered,
/// so a test can keep what is at least [`Impact::Serious`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    Minor,
    Moderate,
    Serious,
    Critical,
}

/// One axe-core rule a page breaks.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    /// The rule (`image-alt`, `color-contrast`...).
    pub id: String,
    pub impact: Impact,
    /// What the rule asks, in one line.
    pub help: String,
    /// A CSS selector for each element that breaks it; ` >> ` separates the
    /// selectors of nested frames or shadow roots.
    pub targets: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}): {} at {}",
            self.id,
            self.impact,
            self.help,
            self.targets.join(", ")
        )
    }
}

/// An element's position and size in CSS pixels, relative to the document.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The path in `var`, which must name a file: the panic says what is
/// missing and where it comes from.
fn tool(var: &str, value: Option<OsString>, what: &str) -> PathBuf {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        panic!(
            "{var} is not set: the browser tests need {what}; run them through scripts/test, \
             which installs it (install_browser in scripts/browser.sh) and sets {var}"
        );
    };
    let path = PathBuf::from(value);
    assert!(
        path.is_file(),
        "{var}={}: no such file: the browser tests need {what}; scripts/test installs it \
         (install_browser in scripts/browser.sh)",
        path.display()
    );
    path
}

fn tool_from_env(var: &str, what: &str) -> PathBuf {
    tool(var, std::env::var_os(var), what)
}

/// The browser's command line; its profile goes in `dir`.
fn chrome_args(dir: &Path) -> Vec<String> {
    [
        "--headless=new",
        // Tests run as root, where the browser's sandbox cannot start.
        "--no-sandbox",
        "--disable-gpu",
        // /dev/shm is small in containers: shared memory goes to /tmp instead.
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        // Loopback only, by two guards that each hold alone. Every request
        // goes to a proxy at 127.0.0.1:9, where nothing listens, so it fails
        // before a name is looked up or a packet leaves; the browser never
        // sends loopback through a proxy. And every host, names and
        // addresses alike, resolves to nothing but 127.0.0.1 and localhost.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
        // No update checks or other traffic of the browser's own.
        "--disable-background-networking",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("--user-data-dir={}", dir.join("profile").display())])
    .collect()
}

/// A loopback port free now, for chromedriver to take.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One WebDriver command: `body` is `None` for a GET or DELETE. The answer's
/// `value`, or the driver's error.
async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    command: &str,
    body: Option<Value>,
) -> Result<Value> {
    let transport = |source: Box<dyn std::error::Error + Send + Sync>| BrowserError::Transport {
        command: command.to_owned(),
        source,
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| transport(e.into()))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| transport(e.into()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.into()))?
            .to_bytes();
        Ok::<_, BrowserError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .map_err(|_| BrowserError::Timeout {
            command: command.to_owned(),
        })??;
    let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| BrowserError::Protocol {
        command: command.to_owned(),
        detail: format!(
            "HTTP {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        ),
    })?;
    let value = answer.get_mut("value").map(Value::take).unwrap_or_default();
    if status.is_success() {
        // Even when it holds an `error`: a script may return any object.
        return Ok(value);
    }
    match value.get("error").and_then(Value::as_str) {
        Some(error) => {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(BrowserError::WebDriver {
                command: command.to_owned(),
                error: error.to_owned(),
                // chromedriver starts its messages with the error code.
                message: message
                    .strip_prefix(&format!("{error}: "))
                    .unwrap_or(message)
                    .to_owned(),
            })
        }
        None => Err(BrowserError::Protocol {
            command: command.to_owned(),
            detail: format!("HTTP {status} without a WebDriver error: {value}"),
        }),
    }
}

fn from_value<T: serde::de::DeserializeOwned>(command: &str, value: Value) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| BrowserError::Protocol {
        command: command.to_owned(),
        detail: format!("{e}: {value}"),
    })
}

/// An open WebDriver session: what a [`Browser`] and its [`Element`]s share.
#[derive(Debug)]
struct Session {
    client: HttpClient,
    /// `http://127.0.0.1:PORT`
    driver: String,
    id: String,
}

impl Session {
    /// `path` is relative to the session (`/url`); errors name it so.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let command = format!("{method} {path}");
        let url = format!("{}/session/{}{path}", self.driver, self.id);
        call(&self.client, method, &url, &command, body).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.command(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.command(Method::POST, path, Some(body)).await
    }

    async fn string(&self, path: &str) -> Result<String> {
        let value = self.get(path).await?;
        from_value(&format!("GET {path}"), value)
    }

    fn element(self: &Arc<Self>, command: &str, value: &Value) -> Result<Element> {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| BrowserError::Protocol {
                command: command.to_owned(),
                detail: format!("not an element: {value}"),
            })?;
        Ok(Element {
            session: Arc::clone(self),
            id: id.to_owned(),
        })
    }
}

/// The live processes (zombies are dead, only waiting to be collected) in
/// process group `pgid` or whose command line names `dir`, with their names.
fn processes(pgid: nix::unistd::Pid, dir: &Path) -> Vec<(nix::unistd::Pid, String)> {
    let group = pgid.to_string();
    let dir = dir.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let (Ok(stat), Ok(cmdline)) = (
            std::fs::read_to_string(entry.path().join("stat")),
            std::fs::read(entry.path().join("cmdline")),
        ) else {
            continue;
        };
        // `pid (name) state ppid pgrp ...`: the name may hold spaces and
        // parentheses, so the fields are counted from its last ")".
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        let fields: Vec<&str> = tail.split_whitespace().collect();
        let zombie = fields.first() == Some(&"Z");
        let in_group = fields.get(2) == Some(&group.as_str());
        if !zombie && (in_group || String::from_utf8_lossy(&cmdline).contains(&*dir)) {
            found.push((nix::unistd::Pid::from_raw(pid), name.to_owned()));
        }
    }
    found
}

/// chromedriver in a process group of its own, which the browser it starts
/// joins: killing the group ends them together.
struct Driver {
    child: Child,
    /// The browser's directory: the crash handler, which leaves the group,
    /// is known by it.
    dir: PathBuf,
    log: PathBuf,
}

impl Driver {
    /// `dir` also takes what the browser writes outside its profile (its
    /// crash reports database): nothing goes to the user's own directories.
    fn spawn(chromedriver: &Path, port: u16, dir: &Path) -> std::io::Result<Self> {
        let log = dir.join(format!("chromedriver-{port}.log"));
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self {
            child,
            dir: dir.to_owned(),
            log,
        })
    }

    fn pgid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// The end of chromedriver's log, for an error that says why it failed.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until the driver says it is ready, or has exited.
    async fn ready(
        &mut self,
        client: &HttpClient,
        driver: &str,
    ) -> std::result::Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{driver}/status");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited ({status})"));
            }
            if let Ok(value) = call(client, Method::GET, &url, "GET /status", None).await
                && value.get("ready") == Some(&Value::Bool(true))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready after {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        let _ = killpg(self.pgid(), Signal::SIGKILL);
        // The crash handler is outside the group, and a kill is sent, not
        // awaited: end what is left, by its id, and wait until nothing is,
        // so that nothing writes to the directory about to be removed.
        // chromedriver is collected last: until then its id, which names
        // the group, cannot be given to another process.
        let deadline = Instant::now() + QUIT_TIMEOUT;
        loop {
            let left = processes(self.pgid(), &self.dir);
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, _) in left {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.wait();
    }
}

/// A headless browser with one WebDriver session. See the module docs.
pub struct Browser {
    session: Arc<Session>,
    port: u16,
    // Fields drop in order: the driver and its browser before the directory
    // they write to.
    driver: Driver,
    /// The browser's profile, configuration and cache, and chromedriver's logs.
    dir: tempfile::TempDir,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.session.driver)
            .field("session", &self.session.id)
            .finish()
    }
}

impl Browser {
    /// Starts chromedriver and a browser session. Panics when the browser
    /// or the driver is missing (see the module docs) or does not start.
    pub async fn start() -> Browser {
        let chromium = tool_from_env(
            "CUSTODY_TEST_CHROMIUM",
            "Chromium (Debian package chromium)",
        );
        let chromedriver = tool_from_env(
            "CUSTODY_TEST_CHROMEDRIVER",
            "chromedriver (Debian package chromium-driver)",
        );
        let dir = tempfile::Builder::new()
            .prefix("custody-browser.")
            .tempdir()
            .expect("a temporary directory for the browser");
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        // The port is free when chosen, but another process may take it
        // before chromedriver does: then chromedriver exits, and we retry.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port().expect("a free loopback port");
            let mut driver = Driver::spawn(&chromedriver, port, dir.path())
                .unwrap_or_else(|e| panic!("could not run {}: {e}", chromedriver.display()));
            let base = format!("http://127.0.0.1:{port}");
            if let Err(why) = driver.ready(&client, &base).await {
                failures.push(format!("port {port}: {why}\n{}", driver.log_tail()));
                continue;
            }
            let session = match Self::session(&client, &base, &chromium, dir.path()).await {
                Ok(session) => session,
                Err(e) => panic!(
                    "{} started, but no browser session ({}): {e}\nchromedriver's log ends:\n{}",
                    chromedriver.display(),
                    chromium.display(),
                    driver.log_tail()
                ),
            };
            return Browser {
                session: Arc::new(session),
                port,
                driver,
                dir,
            };
        }
        panic!(
            "{} did not start:\n{}",
            chromedriver.display(),
            failures.join("\n")
        );
    }

    async fn session(
        client: &HttpClient,
        driver: &str,
        chromium: &Path,
        dir: &Path,
    ) -> Result<Session> {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": false,
                    "pageLoadStrategy": "normal",
                    "timeouts": {
                        "implicit": 0,
                        "pageLoad": PAGE_TIMEOUT_MS,
                        "script": PAGE_TIMEOUT_MS,
                    },
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": chrome_args(dir),
                    },
                }
            }
        });
        let url = format!("{driver}/session");
        let value = call(
            client,
            Method::POST,
            &url,
            "POST /session",
            Some(capabilities),
        )
        .await?;
        let id = from_value("POST /session", value["sessionId"].clone())?;
        Ok(Session {
            client: client.clone(),
            driver: driver.to_owned(),
            id,
        })
    }

    /// Opens `url` and waits for it to load. A page that cannot be reached
    /// is an error naming the network error (`net::ERR_...`).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.session.post("/url", json!({ "url": url })).await?;
        Ok(())
    }

    pub async fn current_url(&self) -> Result<String> {
        self.session.string("/url").await
    }

    pub async fn title(&self) -> Result<String> {
        self.session.string("/title").await
    }

    pub async fn page_source(&self) -> Result<String> {
        self.session.string("/source").await
    }

    pub async fn back(&self) -> Result<()> {
        self.session.post("/back", json!({})).await?;
        Ok(())
    }

    /// The first element `css` matches; `no such element` when none does.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let value = self
            .session
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await?;
        self.session.element("POST /element", &value)
    }

    /// Every element `css` matches, in document order (none is not an error).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let value = self
            .session
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        let Value::Array(items) = value else {
            return Err(BrowserError::Protocol {
                command: "POST /elements".into(),
                detail: format!("not a list: {value}"),
            });
        };
        items
            .iter()
            .map(|v| self.session.element("POST /elements", v))
            .collect()
    }

    /// The first element `css` matches, looking again until `timeout` has
    /// passed: for what a page adds after it loaded.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let start = Instant::now();
        loop {
            match self.find(css).await {
                Ok(element) => return Ok(element),
                Err(e) if e.code() == Some("no such element") => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= timeout {
                return Err(BrowserError::NotFound {
                    css: css.to_owned(),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` as the body of a function called with `args` (as
    /// `arguments`) and returns what it returns. Scripts run this way are
    /// not subject to the page's Content-Security-Policy.
    pub async fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.session
            .post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// As [`Browser::execute`], but the result is what the script passes to
    /// its last argument, a callback: `arguments[arguments.length - 1](x)`.
    pub async fn execute_async(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.session
            .post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// The cookies of the current page, HttpOnly ones included.
    pub async fn cookies(&self) -> Result<Vec<Cookie>> {
        let value = self.session.get("/cookie").await?;
        from_value("GET /cookie", value)
    }

    /// The text of the open alert, confirm or prompt dialog.
    pub async fn alert_text(&self) -> Result<String> {
        self.session.string("/alert/text").await
    }

    pub async fn accept_alert(&self) -> Result<()> {
        self.session.post("/alert/accept", json!({})).await?;
        Ok(())
    }

    /// Performs input actions (W3C WebDriver, "Actions"), then releases
    /// every key and button so none stays down for the next command.
    async fn actions(&self, sources: Value) -> Result<()> {
        let done = self
            .session
            .post("/actions", json!({ "actions": sources }))
            .await;
        let released = self.session.command(Method::DELETE, "/actions", None).await;
        done?;
        released?;
        Ok(())
    }

    /// A click on the middle of `element` with Alt held down.
    pub async fn alt_click(&self, element: &Element) -> Result<()> {
        // One tick per action, keyboard and mouse side by side: Alt goes down
        // before the mouse moves and up after the button is released.
        self.actions(json!([
            {
                "type": "key", "id": "keyboard",
                "actions": [
                    { "type": "keyDown", "value": ALT },
                    { "type": "pause" },
                    { "type": "pause" },
                    { "type": "pause" },
                    { "type": "keyUp", "value": ALT },
                ]
            },
            {
                "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
                "actions": [
                    { "type": "pause" },
                    { "type": "pointerMove", "origin": element.reference(), "x": 0, "y": 0 },
                    { "type": "pointerDown", "button": 0 },
                    { "type": "pointerUp", "button": 0 },
                    { "type": "pause" },
                ]
            }
        ]))
        .await
    }

    /// A drag with the left button across `element`, at its vertical middle,
    /// from `from_x` to `to_x`: CSS pixels from the element's left edge.
    pub async fn drag(&self, element: &Element, from_x: i64, to_x: i64) -> Result<()> {
        // Offsets from an element origin count from its centre.
        let centre = (element.rect().await?.width / 2.0).floor() as i64;
        let move_to = |x: i64, duration: u64| {
            json!({
                "type": "pointerMove", "origin": element.reference(),
                "x": x - centre, "y": 0, "duration": duration,
            })
        };
        let mut actions = vec![
            move_to(from_x, 0),
            json!({ "type": "pointerDown", "button": 0 }),
        ];
        actions.extend(
            (1..=DRAG_STEPS)
                .map(|i| move_to(from_x + (to_x - from_x) * i / DRAG_STEPS, DRAG_STEP_MS)),
        );
        actions.push(json!({ "type": "pointerUp", "button": 0 }));
        self.actions(json!([{
            "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
            "actions": actions,
        }]))
        .await
    }

    /// Runs axe-core on the page, or on what the CSS selector `context`
    /// matches, and returns the rules it breaks. The script is injected
    /// through WebDriver, which the page's Content-Security-Policy does not
    /// govern, so a page that forbids inline script is checked as it is.
    /// Panics when `CUSTODY_TEST_AXE` does not name axe.min.js.
    pub async fn axe(&self, context: Option<&str>) -> Result<Vec<Violation>> {
        let loaded = self
            .execute("return typeof window.axe === 'object';", &[])
            .await?;
        if loaded != Value::Bool(true) {
            let path = tool_from_env("CUSTODY_TEST_AXE", "axe-core's axe.min.js");
            let source = std::fs::read_to_string(&path)
                .map_err(|e| BrowserError::Axe(format!("cannot read {}: {e}", path.display())))?;
            // The script sets window.axe; the newline ends any trailing comment.
            let loaded = self
                .execute(
                    &format!("{source}\n;return typeof window.axe === 'object';"),
                    &[],
                )
                .await?;
            if loaded != Value::Bool(true) {
                return Err(BrowserError::Axe(format!(
                    "{} ran but defined no window.axe",
                    path.display()
                )));
            }
        }
        let answer = self
            .execute_async(
                r#"
                const done = arguments[arguments.length - 1];
                const target = (t) => Array.isArray(t) ? t.join(' >> ') : t;
                const fail = (e) => done({ failed: String((e && e.message) || e) });
                try {
                  axe.run(arguments[0] ?? document, { resultTypes: ['violations'] })
                    .then((r) => done({ violations: r.violations.map((v) => ({
                      id: v.id,
                      impact: v.impact,
                      help: v.help,
                      targets: v.nodes.map((n) => n.target.map(target).join(' >> ')),
                    })) }), fail);
                } catch (e) {
                  // A context that matches nothing throws before any promise.
                  fail(e);
                }
                "#,
                &[context.map_or(Value::Null, Value::from)],
            )
            .await?;
        if let Some(failed) = answer.get("failed").and_then(Value::as_str) {
            return Err(BrowserError::Axe(failed.to_owned()));
        }
        from_value("axe.run", answer["violations"].clone())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask chromedriver to close the browser first, as a user would: its
        // processes end and most are collected by their parents, where a
        // kill alone leaves every one of them to init. Blocking: a drop
        // cannot await.
        let quit = || -> std::io::Result<()> {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_read_timeout(Some(QUIT_TIMEOUT))?;
            stream.set_write_timeout(Some(QUIT_TIMEOUT))?;
            write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session.id, self.port
            )?;
            // The reply comes once the browser is gone; what it says does not matter.
            let _ = stream.read(&mut [0u8; 512])?;
            Ok(())
        };
        let _ = quit();
        // Then `driver` drops: the group kill catches whatever is left.
    }
}

/// An element of the page, found by [`Browser::find`] and its siblings.
#[derive(Debug, Clone)]
pub struct Element {
    session: Arc<Session>,
    id: String,
}

impl Element {
    /// How WebDriver names this element: an argument for
    /// [`Browser::execute`] (`arguments[0]` is the element there).
    pub fn reference(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn path(&self, what: &str) -> String {
        format!("/element/{}/{what}", self.id)
    }

    /// Scrolls the element into view and clicks its middle, as a user would;
    /// an error when something else covers it.
    pub async fn click(&self) -> Result<()> {
        self.session.post(&self.path("click"), json!({})).await?;
        Ok(())
    }

    /// Types `text` into the element, after what it holds.
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        self.session
            .post(&self.path("value"), json!({ "text": text }))
            .await?;
        Ok(())
    }

    pub async fn clear(&self) -> Result<()> {
        self.session.post(&self.path("clear"), json!({})).await?;
        Ok(())
    }

    /// The text as rendered: hidden parts left out.
    pub async fn text(&self) -> Result<String> {
        self.session.string(&self.path("text")).await
    }

    /// The HTML attribute, `None` when the element has none.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>> {
        let path = self.path(&format!("attribute/{name}"));
        let value = self.session.get(&path).await?;
        from_value(&format!("GET {path}"), value)
    }

    /// The DOM property (`value` of an input is what it holds now).
    pub async fn property(&self, name: &str) -> Result<Value> {
        self.session
            .get(&self.path(&format!("property/{name}")))
            .await
    }

    pub async fn is_displayed(&self) -> Result<bool> {
        let path = self.path("displayed");
        let value = self.session.get(&path).await?;
        from_value(&format!("GET {path}"), value)
    }

    pub async fn rect(&self) -> Result<Rect> {
        let path = self.path("rect");
        let value = self.session.get(&path).await?;
        from_value(&format!("GET {path}"), value)
    }
}

mod tests {
    use super::*;

    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    /// What the UI sends: scripts and styles from the page's own origin, none inline.
    const CSP: &str = "default-src 'self'; script-src 'self'";
    const WAIT: Duration = Duration::from_secs(5);

    /// An inline script that would retitle the page, if the CSP let it run.
    const INLINE: &str = "<script>document.title = 'inline script ran';</script>";

    const FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Harness</title>
<link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script>
INLINE</head>
<body><main>
<h1>Harness</h1>
<form><label for="name">Name</label> <input id="name" name="name">
<button id="go" type="button">Go</button></form>
<p id="out"></p>
<button id="alt" type="button">Alt</button>
<p id="alt-out"></p>
<div id="track"></div>
<p id="drag-out"></p>
<p id="hidden" hidden>not shown</p>
<button id="ask" type="button">Ask</button>
<a href="/clean">another page</a>
</main></body></html>
"#;

    const APP_JS: &str = r#"
const $ = (id) => document.getElementById(id);
$('go').addEventListener('click', () => {
  $('out').textContent = $('name').value;
  // Later than the click's answer: wait_for has to look again.
  setTimeout(() => {
    const p = document.createElement('p');
    p.id = 'late';
    p.textContent = 'late';
    document.querySelector('main').append(p);
  }, 400);
});
$('alt').addEventListener('click', (e) => { $('alt-out').textContent = 'alt=' + e.altKey; });
$('ask').addEventListener('click', () => { $('ask').textContent = confirm('Isolate i-0abc?') ? 'yes' : 'no'; });
const track = $('track');
let moves = 0;
track.addEventListener('pointerdown', (e) => { moves = 0; track.dataset.down = e.offsetX; });
track.addEventListener('pointermove', (e) => { if (e.buttons) moves += 1; });
track.addEventListener('pointerup', (e) => {
  $('drag-out').textContent = track.dataset.down + ' ' + e.offsetX + ' ' + moves;
});
"#;

    const APP_CSS: &str = "#track { width: 400px; height: 40px; background: #ccc; }\n";

    const CLEAN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clean</title></head>
<body><main><h1>Clean</h1><p>Nothing to see.</p></main></body></html>
"#;

    const BAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bad</title>
INLINE</head>
<body><main><h1>Bad</h1>
<section id="fine"><h2>Fine</h2><p>Words.</p></section>
<section id="broken"><h2>Broken</h2><img id="pic" src="/pixel.gif"></section>
</main></body></html>
"#;

    /// The smallest GIF: one transparent pixel.
    const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

    /// A small site on `ip`: every answer carries the CSP, every page sets
    /// an HttpOnly, SameSite=Strict session cookie. It records the paths
    /// asked for.
    struct Site {
        addr: SocketAddr,
        hits: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Site {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn page(path: &str) -> Option<(&'static str, Bytes)> {
        let html = |s: &str| Bytes::from(s.replace("INLINE", INLINE));
        Some(match path {
            "/" => ("text/html; charset=utf-8", html(FORM)),
            "/clean" => ("text/html; charset=utf-8", html(CLEAN)),
            "/bad" => ("text/html; charset=utf-8", html(BAD)),
            "/app.js" => ("text/javascript", Bytes::from_static(APP_JS.as_bytes())),
            "/app.css" => ("text/css", Bytes::from_static(APP_CSS.as_bytes())),
            "/pixel.gif" => ("image/gif", Bytes::from_static(PIXEL)),
            _ => return None,
        })
    }

    impl Site {
        async fn start(ip: std::net::IpAddr) -> Site {
            let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let hits = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&hits);
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let seen = Arc::clone(&seen);
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let path = req.uri().path().to_owned();
                            seen.lock().unwrap().push(path.clone());
                            let response = match page(&path) {
                                Some((kind, body)) => {
                                    let mut r = Response::builder()
                                        .header("content-type", kind)
                                        .header("content-security-policy", CSP);
                                    if kind.starts_with("text/html") {
                                        r = r.header(
                                            "set-cookie",
                                            "session=s3cr3t; Path=/; HttpOnly; SameSite=Strict",
                                        );
                                    }
                                    r.body(Full::new(body))
                                }
                                None => Response::builder()
                                    .status(404)
                                    .header("content-security-policy", CSP)
                                    .body(Full::new(Bytes::from_static(b"not found"))),
                            };
                            async move { response }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            Site { addr, hits, task }
        }

        async fn loopback() -> Site {
            Site::start(std::net::Ipv4Addr::LOCALHOST.into()).await
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn hits(&self) -> Vec<String> {
            self.hits.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn drives_a_form_under_csp() {
        let site = Site::loopback().await;
        let browser = Browser::start().await;
        browser.goto(&site.url("/")).await.unwrap();
        // The page's CSP is in force: the inline script did not run.
        assert_eq!(browser.title().await.unwrap(), "Harness");
        assert_eq!(browser.current_url().await.unwrap(), site.url("/"));

        let name = browser.find("#name").await.unwrap();
        name.send_keys("draft").await.unwrap();
        name.clear().await.unwrap();
        name.send_keys("case-7 <b>").await.unwrap();
        assert_eq!(name.property("value").await.unwrap(), "case-7 <b>");
        assert_eq!(
            name.attribute("name").await.unwrap().as_deref(),
            Some("name")
        );
        assert_eq!(name.attribute("title").await.unwrap(), None);
        assert!(
            browser.find("#late").await.is_err(),
            "#late is there before the click"
        );
        browser.find("#go").await.unwrap().click().await.unwrap();
        // Written by /app.js: external script runs under the CSP.
        assert_eq!(
            browser.find("#out").await.unwrap().text().await.unwrap(),
            "case-7 <b>"
        );
        let late = browser.wait_for("#late", WAIT).await.unwrap();
        assert_eq!(late.text().await.unwrap(), "late");
        let err = browser
            .wait_for("#never", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, BrowserError::NotFound { .. }), "{err:?}");

        let missing = browser.find("#nothing").await.unwrap_err();
        assert_eq!(missing.code(), Some("no such element"), "{missing}");
        assert!(missing.to_string().contains("#nothing"), "{missing}");

        assert_eq!(browser.find_all("button").await.unwrap().len(), 3);
        assert!(browser.find_all("table").await.unwrap().is_empty());
        assert!(
            browser
                .find("#out")
                .await
                .unwrap()
                .is_displayed()
                .await
                .unwrap()
        );
        assert!(
            !browser
                .find("#hidden")
                .await
                .unwrap()
                .is_displayed()
                .await
                .unwrap()
        );

        let out = browser.find("#out").await.unwrap();
        let text = browser
            .execute(
                "return arguments[0].textContent + '/' + arguments[1];",
                &[out.reference(), json!(42)],
            )
            .await
            .unwrap();
        assert_eq!(text, "case-7 <b>/42");
        let doubled = browser
            .execute_async(
                "const done = arguments[arguments.length - 1]; setTimeout(() => done(arguments[0] * 2), 50);",
                &[json!(21)],
            )
            .await
            .unwrap();
        assert_eq!(doubled, 42);
        let thrown = browser
            .execute("throw new Error('boom');", &[])
            .await
            .unwrap_err();
        assert_eq!(thrown.code(), Some("javascript error"), "{thrown}");
        assert!(thrown.to_string().contains("boom"), "{thrown}");

        let ask = browser.find("#ask").await.unwrap();
        ask.click().await.unwrap();
        assert_eq!(browser.alert_text().await.unwrap(), "Isolate i-0abc?");
        browser.accept_alert().await.unwrap();
        assert_eq!(ask.text().await.unwrap(), "yes");

        assert!(
            browser
                .page_source()
                .await
                .unwrap()
                .contains("id=\"track\"")
        );
        browser.find("a").await.unwrap().click().await.unwrap();
        browser.wait_for("h1", WAIT).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "Clean");
        browser.back().await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "Harness");
        assert_eq!(browser.current_url().await.unwrap(), site.url("/"));
    }

    #[tokio::test]
    async fn reports_cookie_attributes() {
        let site = Site::loopback().await;
        let browser = Browser::start().await;
        browser.goto(&site.url("/clean")).await.unwrap();
        let cookies = browser.cookies().await.unwrap();
        let session = cookies
            .iter()
            .find(|c| c.name == "session")
            .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
        assert_eq!(session.value, "s3cr3t");
        assert!(session.http_only, "{session:?}");
        assert!(!session.secure, "{session:?}");
        assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
        assert_eq!(session.path.as_deref(), Some("/"), "{session:?}");
        // HttpOnly as the page sees it: not in document.cookie.
        let visible = browser
            .execute("return document.cookie;", &[])
            .await
            .unwrap();
        assert_eq!(visible, "");
    }

    #[tokio::test]
    async fn alt_clicks_and_drags() {
        let site = Site::loopback().await;
        let browser = Browser::start().await;
        browser.goto(&site.url("/")).await.unwrap();
        let alt = browser.find("#alt").await.unwrap();
        let out = browser.find("#alt-out").await.unwrap();
        alt.click().await.unwrap();
        assert_eq!(out.text().await.unwrap(), "alt=false");
        browser.alt_click(&alt).await.unwrap();
        assert_eq!(out.text().await.unwrap(), "alt=true");
        // Alt was released: a plain click after it is plain.
        alt.click().await.unwrap();
        assert_eq!(out.text().await.unwrap(), "alt=false");

        let track = browser.find("#track").await.unwrap();
        let rect = track.rect().await.unwrap();
        assert_eq!((rect.width, rect.height), (400.0, 40.0), "{rect:?}");
        assert!(rect.x > 0.0 && rect.y > 0.0, "{rect:?}");
        browser.drag(&track, 50, 300).await.unwrap();
        let got = browser
            .find("#drag-out")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let numbers: Vec<f64> = got.split(' ').map(|n| n.parse().unwrap()).collect();
        let [down, up, moves] = numbers[..] else {
            panic!("drag recorded {got:?}");
        };
        assert!((down - 50.0).abs() <= 1.0, "pointer down at {down}, not 50");
        assert!((up - 300.0).abs() <= 1.0, "pointer up at {up}, not 300");
        assert!(
            moves >= (DRAG_STEPS / 2) as f64,
            "{moves} pointer moves with the button down, of {DRAG_STEPS}: {got}"
        );
        // Right to left, for a brush drawn backwards.
        browser.drag(&track, 390, 10).await.unwrap();
        let got = browser
            .find("#drag-out")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let numbers: Vec<f64> = got.split(' ').map(|n| n.parse().unwrap()).collect();
        assert!((numbers[0] - 390.0).abs() <= 1.0, "{got}");
        assert!((numbers[1] - 10.0).abs() <= 1.0, "{got}");
    }

    /// A non-loopback address of this machine, if it has one: the one it
    /// would send from towards a documentation address (TEST-NET-1). A UDP
    /// connect sends nothing.
    fn own_address() -> Option<std::net::IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect("192.0.2.1:9").ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    }

    #[tokio::test]
    async fn reaches_loopback_only() {
        let site = Site::loopback().await;
        let browser = Browser::start().await;
        browser.goto(&site.url("/clean")).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "Clean");

        // A name: refused at the proxy, before any lookup. The proxy's error
        // is the proof: without the restriction this would be a DNS failure
        // or a page, depending on the machine's network.
        let err = browser.goto("http://example.com/").await.unwrap_err();
        assert!(
            err.to_string().contains("ERR_PROXY_CONNECTION_FAILED"),
            "example.com: {err}"
        );

        // An address that is not loopback, but is this machine's own: the
        // site there answers the test directly, and must not hear from the
        // browser.
        match own_address() {
            Some(ip) => {
                let outside = Site::start(ip).await;
                TcpStream::connect(outside.addr).expect("the test reaches its own address");
                let err = browser.goto(&outside.url("/clean")).await.unwrap_err();
                assert!(
                    err.to_string().contains("ERR_PROXY_CONNECTION_FAILED"),
                    "{}: {err}",
                    outside.url("/clean")
                );
                assert_eq!(outside.hits(), Vec::<String>::new());
            }
            None => {
                eprintln!("NOT RUN: the check of a non-loopback address: this machine has none")
            }
        }

        // Loopback still loads after the failures.
        browser.goto(&site.url("/")).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "Harness");
        assert!(
            site.hits().iter().any(|p| p == "/app.js"),
            "{:?}",
            site.hits()
        );
    }

    #[tokio::test]
    async fn axe_finds_violations_under_csp() {
        let site = Site::loopback().await;
        let browser = Browser::start().await;
        browser.goto(&site.url("/bad")).await.unwrap();
        // The CSP holds on this page: the inline script did not run, yet axe does.
        assert_eq!(browser.title().await.unwrap(), "Bad");
        let violations = browser.axe(None).await.unwrap();
        let image = violations
            .iter()
            .find(|v| v.id == "image-alt")
            .unwrap_or_else(|| panic!("no image-alt in {violations:?}"));
        assert_eq!(image.impact, Impact::Critical, "{image}");
        assert_eq!(image.targets, ["#pic"], "{image}");
        assert!(!image.help.is_empty(), "{image}");

        // A context leaves the image out; run again on the same page (axe
        // already loaded).
        let within = browser.axe(Some("#fine")).await.unwrap();
        assert!(within.iter().all(|v| v.id != "image-alt"), "{within:?}");
        let err = browser.axe(Some("#no-such-section")).await.unwrap_err();
        assert!(matches!(err, BrowserError::Axe(_)), "{err:?}");

        for path in ["/clean", "/"] {
            browser.goto(&site.url(path)).await.unwrap();
            let serious: Vec<String> = browser
                .axe(None)
                .await
                .unwrap()
                .iter()
                .filter(|v| v.impact >= Impact::Serious)
                .map(ToString::to_string)
                .collect();
            assert!(serious.is_empty(), "{path}: {serious:#?}");
        }
    }

    /// Every process of the browser, the crash handler that leaves
    /// chromedriver's process group included, ends with it.
    #[tokio::test]
    async fn leaves_no_process_behind() {
        let site = Site::loopback().await;
        let browser = Browser::start().await;
        browser.goto(&site.url("/clean")).await.unwrap();
        let pgid = browser.driver.pgid();
        let dir = browser.dir.path().to_owned();
        let names = |found: Vec<(nix::unistd::Pid, String)>| -> Vec<String> {
            found.into_iter().map(|(_, name)| name).collect()
        };
        let before = names(processes(pgid, &dir));
        for name in ["chromedriver", "chromium", "chrome_crashpad"] {
            assert!(before.contains(&name.to_owned()), "no {name} in {before:?}");
        }
        drop(browser);
        assert_eq!(names(processes(pgid, &dir)), Vec::<String>::new());
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }

    #[test]
    #[should_panic(
        expected = "CUSTODY_TEST_CHROMEDRIVER is not set: the browser tests need chromedriver; run them through scripts/test, which installs it"
    )]
    fn unset_driver_is_a_failure() {
        tool("CUSTODY_TEST_CHROMEDRIVER", None, "chromedriver");
    }

    #[test]
    #[should_panic(
        expected = "CUSTODY_TEST_CHROMIUM=/nonexistent/chromium: no such file: the browser tests need Chromium; scripts/test installs it"
    )]
    fn absent_browser_is_a_failure() {
        tool(
            "CUSTODY_TEST_CHROMIUM",
            Some("/nonexistent/chromium".into()),
            "Chromium",
        );
    }
}
