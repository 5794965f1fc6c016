//! The web client's files, embedded at build time: `build.rs` builds `web/` with Node.js
//! (`node build.mjs`) and lists every file of the result in `$OUT_DIR/assets.rs`, with the gzip
//! form of each text file (compressed at build time, kept when smaller).

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
    /// `body` gzip-compressed (RFC 1952, DEFLATE at best compression, made at build time), sent
    /// with `Content-Encoding: gzip` to a browser that accepts it; `None` for files that are
    /// not text (images, fonts) or do not get smaller. Its `ETag` is [`Asset::gzip_etag`].
    pub gzip: Option<&'static [u8]>,
}

impl Asset {
    /// The `ETag` of the gzip form: [`Asset::etag`] with `-gzip` before its closing quote
    /// (`"<hex>-gzip"`), so that a cache never takes one form for the other.
    pub fn gzip_etag(&self) -> String {
        let inner = self
            .etag
            .strip_suffix('"')
            .unwrap_or(self.etag)
            .trim_start_matches('"');
        format!("\"{inner}-gzip\"")
    }
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

    #[test]
    fn text_files_have_a_smaller_gzip_form_with_the_same_bytes() {
        use std::io::Read as _;

        for name in ["/index.html", "/app.js", "/app.css"] {
            assert!(find(name).unwrap().gzip.is_some(), "{name} has a gzip form");
        }
        for asset in all() {
            let Some(gz) = asset.gzip else { continue };
            assert!(gz.len() < asset.body.len(), "{}", asset.path);
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, asset.body, "{}", asset.path);
            let etag = asset.gzip_etag();
            assert_ne!(etag, asset.etag);
            assert_eq!(
                etag,
                format!("{}-gzip\"", &asset.etag[..asset.etag.len() - 1])
            );
        }
    }
}
