//! A tiny blocking HTTP client for the CLI to call the running daemon's admin endpoint.
//!
//! What it does: one `GET` or `POST` (JSON body) to `base` + `path`, with an optional bearer
//! token, and returns the status and the body (as text, or as bytes), whatever the status.
//!
//! What it does not do: no TLS, no proxies, no retries, no redirects; it does not interpret
//! the answer.
//!
//! Invariants: every call is bounded by [`TIMEOUT`]; response bodies are capped at
//! [`MAX_RESPONSE`] bytes.

use std::time::Duration;

use super::AdminError;

/// The longest a call may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read.
pub const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// `GET base+path`; returns the status and the body.
pub fn get(base: &str, path: &str, token: Option<&str>) -> Result<(u16, String), AdminError> {
    let (status, body) = get_bytes(base, path, token)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `GET base+path`; returns the status and the body as bytes (a stored message may hold
/// 8-bit octets that are not UTF-8).
pub fn get_bytes(
    base: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), AdminError> {
    let url = join(base, path);
    let mut req = agent().get(&url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    finish(&url, req.call())
}

/// `POST base+path` with a JSON `body`; returns the status and the body.
pub fn post(
    base: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), AdminError> {
    let url = join(base, path);
    let mut req = agent()
        .post(&url)
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let (status, body) = finish(&url, req.send(body))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .proxy(None)
        .build()
        .new_agent()
}

fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn finish(
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Vec<u8>), AdminError> {
    let err = |source| AdminError::Transport {
        url: url.to_string(),
        source: Box::new(source),
    };
    let mut resp = result.map_err(err)?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(err)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_with_one_slash() {
        assert_eq!(
            join("http://127.0.0.1:8025/", "/queue"),
            "http://127.0.0.1:8025/queue"
        );
        assert_eq!(
            join("http://127.0.0.1:8025", "queue"),
            "http://127.0.0.1:8025/queue"
        );
    }

    #[test]
    fn refused_connection_is_an_error() {
        // Bind then drop to get a loopback port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind");
        let r = get(&format!("http://127.0.0.1:{port}"), "/x", None);
        assert!(matches!(r, Err(AdminError::Transport { .. })));
    }
}
