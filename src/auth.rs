//! Secrets and their checks, shared by both front ends: the memcached
//! `--auth-file` (memcached's `-Y`) and the HTTP `--http-token-file`
//! bearer token. Every comparison of a secret is constant time
//! (`subtle`), so response timing does not reveal how much of a guess
//! was right.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use subtle::ConstantTimeEq;

/// The `user:password` pairs of an auth file.
#[derive(Clone)]
pub struct Credentials {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} users)", self.entries.len())
    }
}

impl Credentials {
    /// Reads memcached's auth file format: one `user:password` per line
    /// (split at the first `:`); blank lines are skipped.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read(path).with_context(|| format!("reading auth file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in auth file {}", path.display()))
    }

    pub fn parse(text: &[u8]) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .with_context(|| format!("line {}: expected user:password", n + 1))?;
            let (user, pass) = (&line[..colon], &line[colon + 1..]);
            anyhow::ensure!(!user.is_empty(), "line {}: empty user name", n + 1);
            entries.push((user.to_vec(), pass.to_vec()));
        }
        anyhow::ensure!(!entries.is_empty(), "no user:password lines");
        Ok(Credentials { entries })
    }

    /// Whether `user`/`password` match an entry. Every entry is compared,
    /// each in constant time, so timing does not depend on which matched.
    pub fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        for (u, p) in &self.entries {
            ok |= u.as_slice().ct_eq(user) & p.as_slice().ct_eq(password);
        }
        ok.into()
    }
}

/// The HTTP API's bearer token.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8]>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// Reads the token file; surrounding whitespace (a trailing newline)
    /// is not part of the token.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        Self::new(text.trim())
    }

    /// The token of `--http-token-file`, if set (for the HTTP listener).
    pub fn from_config(sec: &crate::config::SecurityConfig) -> anyhow::Result<Option<Self>> {
        sec.http_token_file.as_deref().map(Self::load).transpose()
    }

    pub fn new(token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(!token.is_empty(), "the HTTP token is empty");
        Ok(BearerToken(token.as_bytes().into()))
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn accepts(&self, authorization: &[u8]) -> bool {
        let Some(scheme_end) = authorization.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = authorization.split_at(scheme_end);
        let presented = rest.trim_ascii();
        scheme.eq_ignore_ascii_case(b"bearer") && bool::from(self.0.as_ref().ct_eq(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_lines() {
        let c = Credentials::parse(b"alice:s3cret\r\n\nbob:pa:ss\n").unwrap();
        assert!(c.verify(b"alice", b"s3cret"));
        assert!(c.verify(b"bob", b"pa:ss"));
        assert!(!c.verify(b"alice", b"s3cre"));
        assert!(!c.verify(b"alice", b"s3cret "));
        assert!(!c.verify(b"bob", b"s3cret"));
        assert!(!c.verify(b"", b""));
        assert!(Credentials::parse(b"no colon\n").is_err());
        assert!(Credentials::parse(b"\n\n").is_err());
    }

    #[test]
    fn bearer_header_forms() {
        let t = BearerToken::new("tok-123").unwrap();
        assert!(t.accepts(b"Bearer tok-123"));
        assert!(t.accepts(b"bearer  tok-123 "));
        assert!(!t.accepts(b"Bearer tok-12"));
        assert!(!t.accepts(b"Basic tok-123"));
        assert!(!t.accepts(b"tok-123"));
        assert!(BearerToken::new("").is_err());
    }

    #[test]
    fn token_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-123\n").unwrap();
        let sec = crate::config::SecurityConfig {
            http_token_file: Some(path),
            ..Default::default()
        };
        let t = BearerToken::from_config(&sec).unwrap().unwrap();
        assert!(t.accepts(b"Bearer tok-123"));
        assert!(BearerToken::from_config(&Default::default())
            .unwrap()
            .is_none());
    }
}
