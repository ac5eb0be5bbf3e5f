//! Headless Chromium driven over the DevTools protocol, for the web UI's
//! tests: `--remote-debugging-pipe` (NUL-separated JSON on fds 3 and 4),
//! connected through two FIFOs by `sh`, so no WebSocket client and no
//! browser download are needed. Also a real `hangar serve` to point it at.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Debian's chromium; `None` (the test skips loudly) when it is missing,
/// except under CI, where that is a failure.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed; .ci/packages.txt lists it");
        }
        eprintln!("SKIPPED {test}: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// A child process killed (and reaped) when the test ends, however it ends.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hangar serve` on a free port with the given extra arguments; its URL
/// (ending in `/ui/`) and the admin token it printed.
pub fn serve(bin: &str, data: &Path, args: &[&str]) -> (Kill, String, String) {
    let mut server = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = super::serve_banner(&mut server);
    let server = Kill(server);
    let url = format!("{}/ui/", banner.url);
    (server, url, banner.token.unwrap_or_default())
}

pub struct Cdp {
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next: u64,
    session: Option<String>,
    _browser: Kill,
}

impl Cdp {
    /// Starts headless Chromium on `page` (profile and FIFOs under `tmp`)
    /// and attaches to its page.
    pub fn launch(chrome: &Path, tmp: &Path, page: &str) -> Cdp {
        let to_fifo = tmp.join("to-chrome");
        let from_fifo = tmp.join("from-chrome");
        for f in [&to_fifo, &from_fifo] {
            assert!(Command::new("mkfifo").arg(f).status().unwrap().success());
        }
        let profile = tmp.join("profile");
        let script = format!(
            "exec '{}' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
             --disable-component-update --disable-sync --user-data-dir='{}' --remote-debugging-pipe '{}' 3<'{}' 4>'{}'",
            chrome.display(),
            profile.display(),
            page,
            to_fifo.display(),
            from_fifo.display()
        );
        let browser = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let browser = Kill(browser);
        // Opening order matters: chromium opens fd 3 (read) first, then fd 4.
        let to = std::fs::OpenOptions::new()
            .write(true)
            .open(&to_fifo)
            .unwrap();
        let from = BufReader::new(std::fs::File::open(&from_fifo).unwrap());
        let mut cdp = Cdp {
            to,
            from,
            next: 0,
            session: None,
            _browser: browser,
        };
        let targets = cdp.call("Target.getTargets", json!({}));
        let target = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target")["targetId"]
            .clone();
        let attached = cdp.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        cdp.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        cdp
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.to.write_all(msg.to_string().as_bytes()).unwrap();
        self.to.write_all(b"\0").unwrap();
        self.to.flush().unwrap();
        loop {
            let mut buf = Vec::new();
            self.from.read_until(0, &mut buf).unwrap();
            assert!(!buf.is_empty(), "chromium closed the DevTools pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    pub fn eval(&mut self, expr: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )["result"]["value"]
            .clone()
    }

    /// Evaluates `expr` until it is true, or fails naming `what` and the
    /// page's error line after `secs`.
    pub fn wait(&mut self, what: &str, secs: u64, expr: &str) {
        let start = Instant::now();
        loop {
            if self.eval(&format!("!!({expr})")) == json!(true) {
                return;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let err =
                    self.eval("(document.querySelector('#error, #flash')||{}).innerText || ''");
                let body = self.eval("document.querySelector('#main').innerText.slice(0, 2000)");
                panic!("{what}: not within {secs} s (page says {err}); page: {body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Goes to a hash route of the UI and waits for `ready`.
    pub fn go(&mut self, hash: &str, ready: &str) {
        self.eval(&format!("location.hash = {}; 1", json!(hash)));
        self.wait(&format!("page {hash}"), 20, ready);
    }

    /// Fills the form fields named in `fields` (inside the element `form`
    /// selects) and submits it, as a user would.
    pub fn submit(&mut self, form: &str, fields: &[(&str, &str)]) {
        let mut js = format!(
            "(() => {{ const f = document.querySelector({}); ",
            json!(form)
        );
        for (name, value) in fields {
            js += &format!(
                "f.querySelector('[name=\"{name}\"]').value = {}; ",
                json!(value)
            );
        }
        js += "f.requestSubmit(); return 1; })()";
        self.eval(&js);
    }

    /// Clicks the element `selector` selects.
    pub fn click(&mut self, selector: &str) {
        let ok = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        ));
        assert_eq!(ok, json!(true), "nothing to click at {selector}");
    }
}

/// One HTTP/1.0 request (no chunked answer to undo): status and body.
pub fn http(method: &str, url: &str, token: &str, body: Option<&str>) -> (u16, String) {
    use std::io::Read;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
