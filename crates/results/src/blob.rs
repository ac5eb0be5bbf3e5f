//! Uploads in progress and the blob endpoints' byte handling: a body streamed
//! to a file while it is hashed, Azure's blocks and block lists, and a file
//! streamed out while its digest is checked.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

/// What an upload will become.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Cache {
        repository: String,
        scope: String,
        key: String,
        version: String,
        /// The legacy API's `cacheId`.
        legacy_id: Option<u64>,
    },
    Artifact {
        run: String,
        job: String,
        name: String,
        mime: String,
        expires_ms: i64,
    },
}

/// An upload between its creation and its finalization.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) target: Target,
    /// Blocks staged by "Put Block", one file each.
    pub(crate) blocks: PathBuf,
    /// The blob's bytes once written ("Put Blob", a block list, or ranges).
    pub(crate) data: PathBuf,
    /// Size and SHA-256 of `data` once complete (not known for ranges until commit).
    pub(crate) done: Option<(u64, String)>,
    /// Bytes written through the legacy API's ranges.
    pub(crate) ranged: u64,
    pub(crate) created_ms: i64,
}

impl Upload {
    pub(crate) fn new(staging: &Path, id: &str, target: Target) -> Upload {
        Upload {
            target,
            blocks: staging.join(format!("{id}.blocks")),
            data: staging.join(format!("{id}.data")),
            done: None,
            ranged: 0,
            created_ms: crate::now_ms(),
        }
    }

    /// Removes every file of the upload.
    pub(crate) fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.blocks);
        let _ = std::fs::remove_file(&self.data);
    }
}

/// An upload that cannot be accepted: shown to the client as a status and text.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) u16, pub(crate) String);

/// Streams `body` into `file` (at its current position), hashing it when
/// `hash` is given, refusing more than `limit` bytes. Writes go through a
/// blocking thread in batches of a few MiB: one hop per batch, not per chunk.
pub(crate) async fn body_to_file(
    body: Body,
    file: std::fs::File,
    mut hash: Option<Sha256>,
    limit: u64,
) -> Result<(std::fs::File, Option<Sha256>, u64), Refused> {
    const BATCH: usize = 4 << 20;
    let mut stream = body.into_data_stream();
    let mut file = Some(file);
    let mut total: u64 = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH);
    let flush = |f: std::fs::File, h: Option<Sha256>, b: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let mut f = f;
            let mut h = h;
            if let Some(h) = h.as_mut() {
                h.update(&b);
            }
            f.write_all(&b).map(|()| (f, h, b))
        })
    };
    loop {
        let chunk: Option<Result<Bytes, axum::Error>> = stream.next().await;
        let last = match chunk {
            Some(Ok(c)) => {
                total += c.len() as u64;
                if total > limit {
                    return Err(Refused(
                        413,
                        format!("the upload is larger than the limit of {limit} bytes"),
                    ));
                }
                buf.extend_from_slice(&c);
                false
            }
            Some(Err(e)) => {
                return Err(Refused(400, format!("the upload was cut off: {e}")));
            }
            None => true,
        };
        if buf.len() >= BATCH || (last && !buf.is_empty()) {
            let f = file.take().expect("file present between batches");
            let b = std::mem::take(&mut buf);
            let (f, h, mut b) = flush(f, hash.take(), b)
                .await
                .map_err(|e| Refused(500, format!("write task failed: {e}")))?
                .map_err(|e| Refused(500, format!("cannot write the upload: {e}")))?;
            b.clear();
            buf = b;
            file = Some(f);
            hash = h;
        }
        if last {
            break;
        }
    }
    Ok((file.expect("file present at the end"), hash, total))
}

/// Azure's `blockid`: base64 of at most 64 bytes. Returned as a safe file name.
pub(crate) fn block_file_name(block_id: &str) -> Result<String, Refused> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(block_id)
        .map_err(|_| Refused(400, format!("blockid {block_id:?} is not base64")))?;
    if raw.is_empty() || raw.len() > 64 {
        return Err(Refused(400, "a blockid decodes to 1 to 64 bytes".into()));
    }
    Ok(hex::encode(raw))
}

/// The block ids of a "Put Block List" body, in order. The body is a flat
/// list of `<Latest>`, `<Committed>` or `<Uncommitted>` elements holding
/// base64 text, so a scan for those elements is all the XML there is to read
/// (no XML crate for it).
pub(crate) fn parse_block_list(xml: &str) -> Result<Vec<String>, Refused> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('>') else { break };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if matches!(tag, "Latest" | "Committed" | "Uncommitted") {
            let end = format!("</{tag}>");
            let Some(stop) = rest.find(&end) else {
                return Err(Refused(400, format!("unclosed <{tag}> in the block list")));
            };
            out.push(rest[..stop].trim().to_string());
            rest = &rest[stop + end.len()..];
        }
    }
    if out.is_empty() {
        return Err(Refused(400, "the block list names no block".into()));
    }
    Ok(out)
}

/// Concatenates the staged blocks named in `ids` into `data`, hashing them;
/// returns size and SHA-256. Blocks not in the list are dropped, as Azure drops them.
pub(crate) fn commit_blocks(
    blocks: &Path,
    ids: &[String],
    data: &Path,
) -> Result<(u64, String), Refused> {
    let mut out = std::fs::File::create(data)
        .map_err(|e| Refused(500, format!("cannot create {}: {e}", data.display())))?;
    let mut h = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for id in ids {
        let name = block_file_name(id)?;
        let mut f = std::fs::File::open(blocks.join(&name))
            .map_err(|_| Refused(400, format!("block {id} of the list was never uploaded")))?;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Refused(500, format!("cannot read block {id}: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Refused(500, format!("cannot write the blob: {e}")))?;
            total += n as u64;
        }
    }
    let _ = std::fs::remove_dir_all(blocks);
    Ok((total, hex::encode(h.finalize())))
}

/// SHA-256 and size of a file.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(h.finalize())))
}

/// A body streaming `file` (of `size` bytes) that fails, cutting the
/// connection, when the bytes do not hash to `sha256`: the client's
/// `Content-Length` check then reports an incomplete download instead of
/// unpacking corrupt bytes. `on_corrupt` runs once when that happens.
pub(crate) fn checked_stream(
    file: std::fs::File,
    size: u64,
    sha256: String,
    on_corrupt: Box<dyn FnOnce() + Send>,
) -> Body {
    const CHUNK: usize = 1 << 20;
    struct St {
        file: Option<std::fs::File>,
        hash: Option<Sha256>,
        left: u64,
        want: String,
        on_corrupt: Option<Box<dyn FnOnce() + Send>>,
    }
    let st = St {
        file: Some(file),
        hash: Some(Sha256::new()),
        left: size,
        want: sha256,
        on_corrupt: Some(on_corrupt),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        let mut file = st.file.take()?;
        if st.left == 0 {
            return None;
        }
        let want = (st.left as usize).min(CHUNK);
        let mut hash = st.hash.take()?;
        let res = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                let n = file.read(&mut buf[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            hash.update(&buf);
            Ok::<_, std::io::Error>((file, hash, buf))
        })
        .await;
        match res {
            Ok(Ok((file, hash, buf))) if !buf.is_empty() => {
                st.left -= buf.len() as u64;
                st.file = Some(file);
                if st.left == 0 {
                    // The last chunk is held back until the digest is known:
                    // once `Content-Length` bytes are out the response counts
                    // as complete, and an error after it would go unseen.
                    let got = hex::encode(hash.finalize());
                    if !st.want.is_empty() && got != st.want {
                        if let Some(f) = st.on_corrupt.take() {
                            f();
                        }
                        st.file = None;
                        let e = std::io::Error::other(format!(
                            "stored bytes are corrupt (sha256 {got}, expected {})",
                            st.want
                        ));
                        return Some((Err(e), st));
                    }
                } else {
                    st.hash = Some(hash);
                }
                Some((Ok(Bytes::from(buf)), st))
            }
            Ok(Ok(_)) => {
                if let Some(f) = st.on_corrupt.take() {
                    f();
                }
                Some((
                    Err(std::io::Error::other(
                        "stored bytes are shorter than recorded",
                    )),
                    st,
                ))
            }
            Ok(Err(e)) => Some((Err(e), st)),
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), st)),
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_as_the_azure_sdk_writes_them() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList><Latest>QUFB</Latest><Latest>QkJC</Latest></BlockList>"#;
        assert_eq!(parse_block_list(xml).unwrap(), ["QUFB", "QkJC"]);
        assert!(parse_block_list("<BlockList></BlockList>").is_err());
        assert!(parse_block_list("<BlockList><Latest>QUFB</BlockList>").is_err());
    }

    #[test]
    fn block_ids_are_base64_and_become_hex_names() {
        assert_eq!(block_file_name("QUFB").unwrap(), "414141");
        assert!(block_file_name("../x").is_err());
        assert!(block_file_name("").is_err());
    }
}
