//! The HTTP listener's security with a real client (curl): the bearer token
//! guards every route but health checks and docs, and `--tls-cert/--tls-key`
//! put the HTTP API behind TLS too.

mod common;

use std::process::Command;

use common::{self_signed, Server};

/// `curl` status code and body for `url`, with extra arguments.
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

#[test]
fn bearer_token_guards_the_api_but_not_health_or_docs() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let s = Server::start(&["--http-token-file", token_file.to_str().unwrap()]);

    let (code, body) = curl(&s.url("/v1/stats"), &[]);
    assert_eq!(code, 401);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["error"].is_string() && json["message"].is_string(),
        "{body}"
    );
    assert_eq!(
        curl(
            &s.url("/v1/keys/k"),
            &[
                "-X",
                "PUT",
                "--data",
                "v",
                "-H",
                "Authorization: Bearer wrong"
            ]
        )
        .0,
        401
    );

    let auth = ["-H", "Authorization: Bearer s3cret-token"];
    let put = [&auth[..], &["-X", "PUT", "--data", "v"]].concat();
    assert_eq!(curl(&s.url("/v1/keys/k"), &put).0, 201);
    assert_eq!(curl(&s.url("/v1/keys/k"), &auth), (200, "v".to_owned()));

    for public in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        assert_eq!(curl(&s.url(public), &[]).0, 200, "{public} needs no token");
    }
}

#[test]
fn tls_covers_the_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let s = Server::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let https = s
        .url("/v1/keys/greeting")
        .replacen("http://", "https://", 1);

    let put = curl(&https, &["--cacert", &cert, "-X", "PUT", "--data", "hello"]);
    assert_eq!(put.0, 201);
    assert_eq!(
        curl(&https, &["--cacert", &cert]),
        (200, "hello".to_owned())
    );

    // Without trusting the certificate, curl refuses; plain HTTP gets no answer.
    let untrusted = Command::new("curl")
        .args(["-sS", "--max-time", "5", &https])
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "3", &s.url("/healthz")])
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain HTTP must not be served on the TLS port"
    );
}

/// The document served at `/openapi.json` declares the bearer scheme, and
/// says exactly which operations answer 401 without a token: each one is
/// sent untokened to the real server, and the documented ones (only those)
/// answer 401 with the JSON error body.
#[test]
fn openapi_documents_the_bearer_token_as_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let s = Server::start(&["--http-token-file", token_file.to_str().unwrap()]);
    let (code, body) = curl(&s.url("/openapi.json"), &[]);
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let scheme = &doc["components"]["securitySchemes"]["bearer_token"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    let (mut guarded, mut open) = (0, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let documented = op["responses"].get("401").is_some();
            assert_eq!(op.get("security").is_some(), documented, "{method} {path}");
            let url = s.url(&path.replace("{key}", "k"));
            let upper = method.to_uppercase();
            // HEAD answers without a body (curl must not wait for one).
            let args: &[&str] = if method == "head" {
                &["-I", "-o", "/dev/null"]
            } else {
                &["-X", &upper]
            };
            let (code, body) = curl(&url, args);
            if documented {
                guarded += 1;
                assert_eq!(code, 401, "{method} {path}: {body}");
                if method != "head" {
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(json["error"], "unauthorized", "{method} {path}");
                }
            } else {
                open += 1;
                assert_ne!(code, 401, "{method} {path} is documented as public");
            }
        }
    }
    assert!(guarded >= 10 && open == 2, "{guarded} guarded, {open} open");
}
