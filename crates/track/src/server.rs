//! An MLflow tracking server over its REST API (`mlflow server`, MLflow 2.x and 3.x), the
//! calls `push` needs: experiments by name, runs, `runs/log-batch`, run status, and
//! artifacts through the server's artifact proxy (`mlflow-artifacts`).
//!
//! What MLflow's own client does and this copies: credentials from
//! `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` (basic) or `MLFLOW_TRACKING_TOKEN`
//! (bearer), never printed; retries with exponential backoff on 429, 5xx and transport
//! errors, sized by `MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`
//! and `MLFLOW_HTTP_REQUEST_TIMEOUT` (defaults here are shorter than MLflow's 7 retries and
//! 120 s, because a command waits for them before going on without the server); the
//! log-batch limits of 1,000 metrics, 100 params and 100 tags per call.

use std::time::Duration;

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::error::Error;
use crate::local::MetricPoint;
use crate::status::Status;

/// `runs/log-batch` limits (MLflow's `MAX_METRICS_PER_BATCH` etc.).
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
const MAX_ENTITIES: usize = 1000;

/// Default retries after the first try, backoff base (s) and per-request timeout (s).
const RETRIES: u32 = 4;
const BACKOFF_S: f64 = 0.5;
const TIMEOUT_S: u64 = 30;

/// What a path segment keeps unescaped (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A tracking server at an `http://` or `https://` URI.
#[derive(Clone)]
pub struct Server {
    /// Scheme, host, port and path, without credentials or a trailing `/`.
    base: String,
    /// `Authorization` header value.
    auth: Option<String>,
    agent: ureq::Agent,
    retries: u32,
    backoff: f64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Server").field("uri", &self.base).finish()
    }
}

/// Whether `uri` names a tracking server (as opposed to a file store).
pub fn is_server_uri(uri: &str) -> bool {
    let u = uri.trim().to_ascii_lowercase();
    u.starts_with("http://") || u.starts_with("https://")
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("{name}={v:?} is not a valid number"))),
        _ => Ok(default),
    }
}

impl Server {
    /// The server at `uri`, with credentials and retry settings from the environment (and
    /// basic-auth credentials from the URI's `user:password@`, as MLflow accepts too).
    pub fn new(uri: &str) -> Result<Server, Error> {
        let bad = |why: &str| Error::InvalidArgument(format!("tracking URI: {why}"));
        let parsed: ureq::http::Uri = uri.trim().parse().map_err(|e| bad(&format!("{e}")))?;
        let (Some(scheme), Some(authority)) = (parsed.scheme_str(), parsed.authority()) else {
            return Err(bad(
                "a tracking server URI is http://host[:port] or https://...",
            ));
        };
        if !matches!(scheme, "http" | "https") || authority.host().is_empty() {
            return Err(bad(
                "a tracking server URI is http://host[:port] or https://...",
            ));
        }
        if scheme == "https" && !cfg!(feature = "https") {
            return Err(bad(
                "this quantlab was built without TLS (it is opt-in): rebuild with \
                 `cargo build -p quantlab --features https` (or `cargo xtask bench --features \
                 https`), or use the server's http:// address",
            ));
        }
        let user = std::env::var("MLFLOW_TRACKING_USERNAME").ok();
        let pass = std::env::var("MLFLOW_TRACKING_PASSWORD").ok();
        let token = std::env::var("MLFLOW_TRACKING_TOKEN").ok();
        // `user:password@` in the URI, percent-decoded.
        let in_uri = authority.as_str().rsplit_once('@').map(|(info, _)| {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            (dec(u), dec(p))
        });
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let auth = match (user, pass, token, in_uri) {
            (Some(u), Some(p), _, _) => Some(basic(&u, &p)),
            (_, _, Some(t), _) => Some(format!("Bearer {t}")),
            (_, _, _, Some((u, p))) => Some(basic(&u, &p)),
            _ => None,
        };
        // Credentials never travel in (or get printed from) the base URI.
        let host_port = match authority.port() {
            Some(p) => format!("{}:{p}", authority.host()),
            None => authority.host().to_owned(),
        };
        let base = format!("{scheme}://{host_port}{}", parsed.path())
            .trim_end_matches('/')
            .to_owned();
        let timeout = env_number("MLFLOW_HTTP_REQUEST_TIMEOUT", TIMEOUT_S)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(timeout.min(10))))
            .timeout_global(Some(Duration::from_secs(timeout)))
            .build();
        Ok(Server {
            base,
            auth,
            agent: config.into(),
            retries: env_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", RETRIES)?,
            backoff: env_number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", BACKOFF_S)?,
        })
    }

    /// The URI without credentials, for messages and for the push record.
    pub fn uri(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::Unreachable {
            uri: self.base.clone(),
            reason,
        }
    }

    /// One request with retries: `(status, body)` of the first answer that is neither 429
    /// nor 5xx, or [`Error::Unreachable`] once the retries are spent.
    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String), Error> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let wait = self.backoff * f64::from(1u32 << (attempt - 1).min(10));
                std::thread::sleep(Duration::from_secs_f64(wait));
            }
            let result = match (method, body) {
                ("GET", _) => {
                    let mut r = self.agent.get(&url);
                    if let Some(a) = &self.auth {
                        r = r.header("Authorization", a);
                    }
                    r.call()
                }
                (_, b) => {
                    let mut r = if method == "PUT" {
                        self.agent.put(&url)
                    } else {
                        self.agent.post(&url)
                    };
                    if let Some(a) = &self.auth {
                        r = r.header("Authorization", a);
                    }
                    let ty = if method == "PUT" {
                        "application/octet-stream"
                    } else {
                        "application/json"
                    };
                    r.header("Content-Type", ty).send(b.unwrap_or(&[]))
                }
            };
            match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    if status == 429 || status >= 500 {
                        last = format!("HTTP {status} {}", first_line(&text));
                        continue;
                    }
                    return Ok((status, text));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(self.unreachable(format!(
            "{method} {path}: {last} (after {} tries)",
            self.retries + 1
        )))
    }

    /// A JSON API call; a 4xx answer is [`Error::Server`] with MLflow's error code and message.
    fn api(&self, method: &str, endpoint: &str, body: Option<&Value>) -> Result<Value, Error> {
        let path = format!("/api/2.0/mlflow/{endpoint}");
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (status, text) = self.send(method, &path, bytes.as_deref())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            return Err(Error::Server {
                uri: self.base.clone(),
                status,
                code: v["error_code"].as_str().unwrap_or("").to_owned(),
                message: v["message"]
                    .as_str()
                    .map_or_else(|| first_line(&text).to_owned(), str::to_owned),
            });
        }
        if v.is_null() {
            return Err(self.unreachable(format!(
                "{method} {path}: the answer is not JSON (is this an MLflow server?): {}",
                first_line(&text)
            )));
        }
        Ok(v)
    }

    /// The id of the active experiment `name`, created when the server has none.
    pub(crate) fn experiment_id(&self, name: &str) -> Result<String, Error> {
        let q = utf8_percent_encode(name, SEGMENT);
        match self.api(
            "GET",
            &format!("experiments/get-by-name?experiment_name={q}"),
            None,
        ) {
            Ok(v) => {
                let e = &v["experiment"];
                if e["lifecycle_stage"].as_str() == Some("deleted") {
                    return Err(Error::Server {
                        uri: self.base.clone(),
                        status: 400,
                        code: "INVALID_STATE".into(),
                        message: format!(
                            "experiment {name:?} is deleted on the server; restore it \
                             (mlflow experiments restore) or rename it"
                        ),
                    });
                }
                id_of(&e["experiment_id"], "experiment_id", &self.base)
            }
            Err(Error::Server { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {
                let v = self.api("POST", "experiments/create", Some(&json!({ "name": name })))?;
                id_of(&v["experiment_id"], "experiment_id", &self.base)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a run; its id and artifact URI.
    pub(crate) fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_time: i64,
    ) -> Result<(String, String), Error> {
        let v = self.api(
            "POST",
            "runs/create",
            Some(&json!({
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": start_time,
            })),
        )?;
        let info = &v["run"]["info"];
        Ok((
            id_of(&info["run_id"], "run_id", &self.base)?,
            info["artifact_uri"].as_str().unwrap_or("").to_owned(),
        ))
    }

    /// Whether the server has run `id` (deleted runs count as absent).
    pub(crate) fn has_run(&self, id: &str) -> Result<bool, Error> {
        match self.api("GET", &format!("runs/get?run_id={id}"), None) {
            Ok(v) => Ok(v["run"]["info"]["lifecycle_stage"].as_str() != Some("deleted")),
            Err(Error::Server { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Params, tags and metrics, in as many `log-batch` calls as the limits need. Resending
    /// what the server has is harmless: equal params are accepted, tags overwritten, and
    /// identical metric values dropped by the server.
    pub(crate) fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
        metrics: &[MetricPoint],
    ) -> Result<(), Error> {
        let kv = |s: &[(String, String)]| -> Vec<Value> {
            s.iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect()
        };
        // As few calls as the limits allow: each takes up to 100 params, 100 tags and the
        // metrics that fit in the 1,000 entities left.
        let (mut p, mut t, mut m) = (params, tags, metrics);
        while !(p.is_empty() && t.is_empty() && m.is_empty()) {
            let np = p.len().min(MAX_PARAMS);
            let nt = t.len().min(MAX_TAGS);
            let nm = m.len().min(MAX_METRICS).min(MAX_ENTITIES - np - nt);
            let metrics: Vec<Value> = m[..nm]
                .iter()
                .map(|x| {
                    json!({
                        "key": x.key,
                        "value": json_double(x.value),
                        "timestamp": x.timestamp,
                        "step": x.step,
                    })
                })
                .collect();
            let body = json!({
                "run_id": run_id,
                "params": kv(&p[..np]),
                "tags": kv(&t[..nt]),
                "metrics": metrics,
            });
            self.api("POST", "runs/log-batch", Some(&body))?;
            (p, t, m) = (&p[np..], &t[nt..], &m[nm..]);
        }
        Ok(())
    }

    /// Sets the run's status and end time.
    pub(crate) fn update_run(
        &self,
        run_id: &str,
        status: Status,
        end_time: Option<i64>,
    ) -> Result<(), Error> {
        let mut body = json!({ "run_id": run_id, "status": status.as_str() });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        self.api("POST", "runs/update", Some(&body)).map(drop)
    }

    /// Uploads one artifact under the run's artifact URI, through the server's artifact
    /// proxy. A run whose artifacts the server does not proxy (an `s3://` or local root with
    /// `--no-serve-artifacts`) is an error saying so.
    pub(crate) fn upload_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<(), Error> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(Error::Server {
                uri: self.base.clone(),
                status: 0,
                code: "NOT_PROXIED".into(),
                message: format!(
                    "the server stores this run's artifacts at {artifact_uri}, not through its \
                     artifact proxy (start it without --no-serve-artifacts)"
                ),
            });
        };
        // `mlflow-artifacts:/1/<run>/artifacts` or `mlflow-artifacts://host:port/1/...`.
        let root = match rest.strip_prefix("//") {
            Some(r) => r.split_once('/').map_or("", |(_, p)| p),
            None => rest.trim_start_matches('/'),
        };
        let enc = |p: &str| -> String {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let path = format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            enc(root),
            enc(rel)
        );
        let (status, text) = self.send("PUT", &path, Some(&bytes))?;
        if status >= 400 {
            return Err(Error::Server {
                uri: self.base.clone(),
                status,
                code: String::new(),
                message: format!("uploading {rel}: {}", first_line(&text)),
            });
        }
        Ok(())
    }
}

/// A double as protobuf's JSON mapping writes it (`"NaN"`, `"Infinity"` for non-finite).
fn json_double(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(v)
    }
}

fn id_of(v: &Value, what: &str, uri: &str) -> Result<String, Error> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Unreachable {
            uri: uri.to_owned(),
            reason: format!("the answer has no {what} (is this an MLflow server?)"),
        })
}

fn first_line(s: &str) -> &str {
    let l = s.lines().next().unwrap_or("").trim();
    &l[..l.floor_char_boundary(200)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_printed_uri() {
        let s = Server::new("http://alice:s3cr%40t@127.0.0.1:5000/").unwrap();
        assert_eq!(s.uri(), "http://127.0.0.1:5000");
        assert!(!format!("{s:?}").contains("s3cr"));
        let expect = base64::engine::general_purpose::STANDARD.encode("alice:s3cr@t");
        if std::env::var_os("MLFLOW_TRACKING_USERNAME").is_none()
            && std::env::var_os("MLFLOW_TRACKING_TOKEN").is_none()
        {
            assert_eq!(s.auth.as_deref(), Some(format!("Basic {expect}").as_str()));
        }
    }

    #[test]
    fn only_http_uris_are_servers() {
        assert!(is_server_uri("http://h:5000") && is_server_uri(" HTTPS://h"));
        assert!(!is_server_uri("file:///tmp/mlruns") && !is_server_uri("./mlruns"));
        for bad in ["ftp://h", "http://", "not a uri"] {
            assert!(Server::new(bad).is_err(), "{bad}");
        }
        // https needs the opt-in TLS feature, and says so.
        let https = Server::new("https://h:443");
        assert_eq!(https.is_ok(), cfg!(feature = "https"));
        if let Err(e) = https {
            assert!(e.to_string().contains("--features https"), "{e}");
        }
    }

    #[test]
    fn non_finite_metrics_use_protobuf_json() {
        assert_eq!(json_double(f64::NAN), json!("NaN"));
        assert_eq!(json_double(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(json_double(0.5), json!(0.5));
    }

    /// Nothing listens on a port just released: the call gives up after its retries with
    /// an error naming the server.
    #[test]
    fn a_dead_server_is_unreachable_after_the_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Server::new(&format!("http://127.0.0.1:{port}")).unwrap();
        s.retries = 2;
        s.backoff = 0.01;
        let e = s.experiment_id("x").unwrap_err().to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("3 tries"),
            "{e}"
        );
    }

    /// A one-thread HTTP server answering `{}` to everything and keeping each request's
    /// JSON body: enough to see what `log_batch` sends.
    fn recorder() -> (String, std::sync::mpsc::Receiver<Value>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let mut stream = stream.unwrap();
                let mut r = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut len = 0;
                    let mut line = String::new();
                    let mut first = true;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        first = false;
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if first {
                        break;
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null))
                        .unwrap();
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                        .unwrap();
                }
            }
        });
        (uri, rx)
    }

    #[test]
    fn log_batch_keeps_to_mlflows_limits_in_as_few_calls_as_they_allow() {
        let (uri, rx) = recorder();
        let s = Server::new(&uri).unwrap();
        let kv = |n: usize, p: &str| -> Vec<(String, String)> {
            (0..n).map(|i| (format!("{p}{i}"), i.to_string())).collect()
        };
        let metrics: Vec<MetricPoint> = (0..2500)
            .map(|i| MetricPoint {
                key: format!("m{}", i % 7),
                value: if i == 3 { f64::NAN } else { i as f64 },
                timestamp: 1,
                step: i,
            })
            .collect();
        s.log_batch("r", &kv(250, "p"), &kv(5, "t"), &metrics)
            .unwrap();
        let calls: Vec<Value> = rx.try_iter().collect();
        let n = |c: &Value, k: &str| c[k].as_array().unwrap().len();
        assert_eq!(calls.len(), 3, "{} calls", calls.len());
        for c in &calls {
            assert_eq!(c["run_id"], "r");
            assert!(n(c, "params") <= 100 && n(c, "tags") <= 100 && n(c, "metrics") <= 1000);
            assert!(n(c, "params") + n(c, "tags") + n(c, "metrics") <= 1000);
        }
        let total = |k: &str| calls.iter().map(|c| n(c, k)).sum::<usize>();
        assert_eq!(
            (total("params"), total("tags"), total("metrics")),
            (250, 5, 2500)
        );
        assert_eq!(calls[0]["metrics"][3]["value"], "NaN");
    }
}
