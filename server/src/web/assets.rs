//! The web client's files, embedded at build time: `build.rs` builds `web/` with Node.js
//! (`node build.mjs`) and lists every file of the result in `$OUT_DIR/assets.rs`.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its URL path (`/index.html`, `/app.js`).
    pub path: &'static str,
    /// Its `Content-Type`, with a charset for text.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    /// Its `ETag`: the SHA-256 of `body` in lowercase hex, quoted (computed at build time).
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Every embedded file, sorted by path.
pub fn all() -> &'static [Asset] {
    ASSETS
}

/// The embedded file at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|a| a.path.cmp(path))
        .ok()
        .and_then(|i| ASSETS.get(i))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_web_client_is_embedded_with_its_etags() {
        for name in ["/index.html", "/app.js", "/app.css"] {
            assert!(find(name).is_some(), "{name} is embedded");
        }
        assert!(find("/app.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        for asset in all() {
            let hex: String = Sha256::digest(asset.body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(asset.etag, format!("\"{hex}\""), "{}", asset.path);
        }
        assert!(all().windows(2).all(|w| w[0].path < w[1].path));
    }
}
