//! Uploads in progress and the blob endpoints' byte handling: a body streamed
//! to a file while it is hashed, Azure's blocks and block lists, and a file
//! streamed out while its digest is checked.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::storage::Part;

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
    /// The blob once written: a directory of its parts `0`, `1`, ... in
    /// order (one for "Put Blob" or ranges, one per block of a block list).
    pub(crate) data: PathBuf,
    /// Blocks staged so far: file name → size and digest.
    pub(crate) staged: HashMap<String, Part>,
    /// Size and parts of `data` once complete (not known for ranges until commit).
    pub(crate) done: Option<(u64, Vec<Part>)>,
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
            staged: HashMap::new(),
            done: None,
            ranged: 0,
            created_ms: crate::now_ms(),
        }
    }

    /// Removes every file of the upload.
    pub(crate) fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.blocks);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// An upload that cannot be accepted: shown to the client as a status and text.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) u16, pub(crate) String);

/// Streams `body` into `file` (at its current position), hashing it when
/// `hash` is given, refusing more than `limit` bytes. Writes go through a
/// blocking thread in batches of a few MiB, one batch written while the next
/// arrives: one thread hop per batch, not per chunk, and the network and the
/// disk overlap.
pub(crate) async fn body_to_file(
    body: Body,
    file: std::fs::File,
    hash: Option<Sha256>,
    limit: u64,
) -> Result<(std::fs::File, Option<Sha256>, u64), Refused> {
    const BATCH: usize = 4 << 20;
    // A batch is the received chunks themselves (no copy into a buffer).
    type Written = std::io::Result<(std::fs::File, Option<Sha256>, Vec<Bytes>)>;
    let write = |f: std::fs::File, h: Option<Sha256>, b: Vec<Bytes>| {
        tokio::task::spawn_blocking(move || -> Written {
            let mut f = f;
            let mut h = h;
            for c in &b {
                if let Some(h) = h.as_mut() {
                    h.update(c);
                }
                f.write_all(c)?;
            }
            Ok((f, h, b))
        })
    };
    let joined = |r: Result<Written, tokio::task::JoinError>| {
        r.map_err(|e| Refused(500, format!("write task failed: {e}")))?
            .map_err(|e| Refused(500, format!("cannot write the upload: {e}")))
    };
    let mut stream = body.into_data_stream();
    // Either idle (file and hash here) or a batch being written.
    let mut idle = Some((file, hash, Vec::new()));
    let mut writing: Option<tokio::task::JoinHandle<Written>> = None;
    let mut total: u64 = 0;
    let mut buf: Vec<Bytes> = Vec::new();
    let mut buffered = 0usize;
    loop {
        let chunk: Option<Result<Bytes, axum::Error>> = stream.next().await;
        let last = match chunk {
            Some(Ok(c)) => {
                total += c.len() as u64;
                if total > limit {
                    if let Some(w) = writing.take() {
                        let _ = w.await;
                    }
                    return Err(Refused(
                        413,
                        format!("the upload is larger than the limit of {limit} bytes"),
                    ));
                }
                buffered += c.len();
                buf.push(c);
                false
            }
            Some(Err(e)) => {
                if let Some(w) = writing.take() {
                    let _ = w.await;
                }
                return Err(Refused(400, format!("the upload was cut off: {e}")));
            }
            None => true,
        };
        if buffered >= BATCH || (last && buffered > 0) {
            buffered = 0;
            let (f, h, mut spare) = match writing.take() {
                Some(w) => joined(w.await)?,
                None => idle.take().expect("idle when nothing is being written"),
            };
            spare.clear();
            let batch = std::mem::replace(&mut buf, spare);
            writing = Some(write(f, h, batch));
        }
        if last {
            break;
        }
    }
    let (f, h, _) = match writing.take() {
        Some(w) => joined(w.await)?,
        None => idle.take().expect("idle when nothing is being written"),
    };
    Ok((f, h, total))
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

/// Makes the staged blocks named in `ids` the parts of `data`, in order;
/// returns the size and the parts (each block's digest, taken when it
/// arrived). Blocks are linked, not copied: committing a 200 MB archive
/// writes no byte. Blocks not in the list are dropped, as Azure drops them.
pub(crate) fn commit_blocks(
    blocks: &Path,
    ids: &[String],
    data: &Path,
    staged: &HashMap<String, Part>,
) -> Result<(u64, Vec<Part>), Refused> {
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data)
        .map_err(|e| Refused(500, format!("cannot create {}: {e}", data.display())))?;
    let mut total = 0u64;
    let mut parts = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let name = block_file_name(id)?;
        let part = staged
            .get(&name)
            .ok_or_else(|| Refused(400, format!("block {id} of the list was never uploaded")))?;
        // A link, so a block listed twice is two parts of one file.
        std::fs::hard_link(blocks.join(&name), part_path(data, i))
            .map_err(|_| Refused(400, format!("block {id} of the list was never uploaded")))?;
        total += part.size;
        parts.push(part.clone());
    }
    let _ = std::fs::remove_dir_all(blocks);
    Ok((total, parts))
}

/// Part `i` of a blob directory.
pub(crate) fn part_path(data: &Path, i: usize) -> PathBuf {
    data.join(i.to_string())
}

/// Joins a blob's parts into one file at `dest` (an artifact the user keeps),
/// returning its SHA-256: a single part is renamed and keeps its digest;
/// several are copied once, hashed on the way.
pub(crate) fn join_parts(data: &Path, parts: &[Part], dest: &Path) -> std::io::Result<String> {
    if let [one] = parts {
        std::fs::rename(part_path(data, 0), dest)?;
        return Ok(one.sha256.clone());
    }
    let tmp = dest.with_extension("partial");
    let mut out = std::fs::File::create(&tmp)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..parts.len() {
        let mut f = std::fs::File::open(part_path(data, i))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
    }
    drop(out);
    std::fs::rename(&tmp, dest)?;
    Ok(hex::encode(h.finalize()))
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
/// connection, when a part's bytes do not hash to its digest: the client's
/// `Content-Length` check then reports an incomplete download instead of
/// unpacking corrupt bytes. `on_corrupt` runs once when that happens. No
/// parts: nothing to check against (an entry from before digests).
pub(crate) fn checked_stream(
    files: Vec<(PathBuf, Part)>,
    on_corrupt: Box<dyn FnOnce() + Send>,
) -> Body {
    const CHUNK: u64 = 1 << 20;
    struct St {
        /// The open file of the current part.
        file: Option<std::fs::File>,
        hash: Sha256,
        /// Parts still to send, the current one first; its size counts down.
        parts: std::collections::VecDeque<(PathBuf, Part)>,
        on_corrupt: Option<Box<dyn FnOnce() + Send>>,
    }
    let st = St {
        file: None,
        hash: Sha256::new(),
        parts: files.into_iter().filter(|(_, p)| p.size > 0).collect(),
        on_corrupt: Some(on_corrupt),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        let (path, part) = st.parts.front()?;
        let want = part.size.min(CHUNK) as usize;
        let file = st.file.take();
        let path = path.clone();
        let mut hash = std::mem::take(&mut st.hash);
        let res = tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(f) => f,
                None => std::fs::File::open(&path)?,
            };
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
        let (file, hash, buf) = match res {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Some((Err(e), st)),
            Err(e) => return Some((Err(std::io::Error::other(e.to_string())), st)),
        };
        if buf.len() < want {
            if let Some(f) = st.on_corrupt.take() {
                f();
            }
            return Some((
                Err(std::io::Error::other(
                    "stored bytes are shorter than recorded",
                )),
                st,
            ));
        }
        let part = &mut st.parts.front_mut()?.1;
        part.size -= buf.len() as u64;
        if part.size == 0 {
            // A part's last chunk is held back until its digest is known: an
            // error after the last byte of `Content-Length` would go unseen.
            let got = hex::encode(hash.finalize());
            if !part.sha256.is_empty() && got != part.sha256 {
                let e = std::io::Error::other(format!(
                    "stored bytes are corrupt (sha256 {got}, expected {})",
                    part.sha256
                ));
                if let Some(f) = st.on_corrupt.take() {
                    f();
                }
                return Some((Err(e), st));
            }
            st.parts.pop_front();
        } else {
            st.hash = hash;
            st.file = Some(file);
        }
        Some((Ok(Bytes::from(buf)), st))
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
