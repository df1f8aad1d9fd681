//! Where ssmc may write a file, and how it writes it.
//!
//! The rules, the same for every file ssmc writes (`--output`, `--save-inputs`,
//! `--emit-matrix`, the files of `ssmc build -o DIR`):
//!
//! - An output is never the same file (device and inode, or the same path once symbolic
//!   links and `..` are resolved) as a file the command reads (the `.ssm` source, the
//!   `--inputs` file) or as another output of the same command: that would destroy it.
//! - A regular file is written atomically: a temporary file in the same folder, then a
//!   rename over the old one, so a failure leaves the old file (or none) and never half a
//!   file. A symbolic link is followed first: the file it points to is replaced and the
//!   link kept.
//! - Anything that is not a regular file (a directory, a device such as `/dev/full`, a
//!   FIFO, a socket) is refused by name, before any work is done.
//! - The files of `ssmc build -o DIR` replace the entries of DIR with their names: a
//!   symbolic link there is replaced, not written through.

use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file identified by device and inode.
type FileId = (u64, u64);

fn id(m: &Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// The directory a file is written into (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// What kind of file system object `m` describes, in words.
fn kind(m: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Where a write to a path lands: the final name (symbolic links followed, its directory
/// canonical) and, when a regular file is there already, its identity.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The path the new file is renamed onto.
    pub path: PathBuf,
    /// Device and inode of the regular file there now, if any.
    existing: Option<FileId>,
}

impl Resolved {
    /// The same path after links, or the same device and inode (a hard link).
    fn same_file(&self, other: &Resolved) -> bool {
        self.path == other.path || (self.existing.is_some() && self.existing == other.existing)
    }
}

/// Most symbolic links followed, as Linux does.
const MAX_LINKS: usize = 40;

/// Resolves `path` for writing a regular file: follows symbolic links (a dangling one to
/// the file it names), and refuses a directory that does not exist and anything that is
/// not a regular file, saying which.
pub fn resolve(path: &Path) -> Result<Resolved, String> {
    let mut p = path.to_path_buf();
    let mut via = None;
    for _ in 0..MAX_LINKS {
        let links =
            || via.as_ref().map_or(String::new(), |v: &PathBuf| format!(" (the link leads to `{}`)", v.display()));
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p).map_err(|e| format!("cannot read the symbolic link: {e}"))?;
                p = if target.is_absolute() { target } else { parent_dir(&p).join(target) };
                // /dev/stdout and /dev/fd/N lead to ssmc's own file descriptors.
                if p.starts_with("/proc") {
                    return Err(format!(
                        "cannot write the file: it leads to `{}`, a file descriptor, not a file by name; \
                         ssmc writes only regular files",
                        p.display()
                    ));
                }
                via = Some(p.clone());
            }
            Ok(m) if m.is_file() => {
                return Ok(Resolved { path: in_canonical_dir(&p, &links())?, existing: Some(id(&m)) })
            }
            Ok(m) => {
                return Err(format!(
                    "cannot write the file: it is {}{}, and ssmc writes only regular files",
                    kind(&m),
                    links()
                ))
            }
            // Not there, or a path through a file: the directory check says which.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(Resolved { path: in_canonical_dir(&p, &links())?, existing: None })
            }
            Err(e) => return Err(format!("cannot write the file: {e}{}", links())),
        }
    }
    Err(format!("cannot write the file: more than {MAX_LINKS} symbolic links in a chain"))
}

/// `path` with its directory made canonical; the directory must exist.
fn in_canonical_dir(path: &Path, links: &str) -> Result<PathBuf, String> {
    let name =
        path.file_name().ok_or_else(|| format!("cannot write the file: `{}` names no file{links}", path.display()))?;
    let dir = parent_dir(path);
    match std::fs::canonicalize(dir) {
        Ok(d) if d.is_dir() => Ok(d.join(name)),
        Ok(_) => Err(format!("cannot write the file: `{}` is not a directory{links}", dir.display())),
        Err(_) if dir.exists() => Err(format!("cannot write the file: `{}` is not a directory{links}", dir.display())),
        Err(_) => Err(format!("cannot write the file: `{}` does not exist{links}", dir.display())),
    }
}

/// A file a command reads or writes, with what it is to the command (`the --inputs file`).
pub struct Role<'a> {
    /// What the file is, e.g. `--output` or `the source`.
    pub what: &'a str,
    /// Its path as given.
    pub path: &'a Path,
}

/// Checks the outputs of one command before it does any work: each must be writable (see
/// [`resolve`]), none may be a file it reads, and no two may be the same file.
pub fn check_outputs(reads: &[Role], writes: &[Role]) -> Result<(), String> {
    let read: Vec<(&Role, Resolved)> = reads
        .iter()
        .filter_map(|r| {
            let path = std::fs::canonicalize(r.path).ok()?;
            Some((r, Resolved { path, existing: std::fs::metadata(r.path).ok().map(|m| id(&m)) }))
        })
        .collect();
    let mut seen: Vec<(&Role, Resolved)> = Vec::new();
    for w in writes {
        let r = resolve(w.path).map_err(|e| format!("{} `{}`: {e}", w.what, w.path.display()))?;
        for (rr, rr_at) in &read {
            if r.same_file(rr_at) {
                return Err(format!(
                    "{} `{}` is the same file as {} `{}`: writing it would destroy what is read; choose another path",
                    w.what,
                    w.path.display(),
                    rr.what,
                    rr.path.display()
                ));
            }
        }
        for (sw, sr) in &seen {
            if r.same_file(sr) {
                return Err(format!(
                    "{} `{}` and {} `{}` are the same file: one would overwrite the other; choose two paths",
                    sw.what,
                    sw.path.display(),
                    w.what,
                    w.path.display()
                ));
            }
        }
        seen.push((w, r));
    }
    Ok(())
}

/// Checks the files `names` that `ssmc build` writes into `dir`: none may replace a file
/// the command reads (the entry itself: a hard link or the file, not a symbolic link to
/// it, which is replaced) or a directory.
pub fn check_into_dir(dir: &Path, names: &[String], reads: &[Role]) -> Result<(), String> {
    let read: Vec<(&Role, Option<FileId>)> =
        reads.iter().map(|r| (r, std::fs::metadata(r.path).ok().map(|m| id(&m)))).collect();
    for name in names {
        let p = dir.join(name);
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            return Err(format!("`{}` is a directory; `ssmc build` would replace it with a file", p.display()));
        }
        if let Some((r, _)) = read.iter().find(|(_, rid)| *rid == Some(id(&m)) && !m.file_type().is_symlink()) {
            return Err(format!(
                "`{}` is {} `{}`: `ssmc build` would replace it; choose another -o directory",
                p.display(),
                r.what,
                r.path.display()
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to the regular file at `path` atomically (see the module doc): a
/// temporary file in the final file's directory, then a rename onto it. Keeps the
/// permissions of a file replaced; a new file gets 0666 less the umask.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let r = resolve(path)?;
    // tempfile's io errors end with ` at path "<the temporary file>"`, a name the user
    // never gave: keep only the reason.
    let cannot = |e: std::io::Error| {
        let text = e.to_string();
        format!("cannot write the file: {}", text.split(" at path ").next().unwrap_or(&text))
    };
    let perms = match std::fs::metadata(&r.path) {
        Ok(m) => m.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o666),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ssmc-tmp")
        .permissions(perms)
        .tempfile_in(parent_dir(&r.path))
        .map_err(cannot)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(cannot)?;
    tmp.as_file().sync_all().map_err(cannot)?;
    tmp.persist(&r.path).map_err(|e| cannot(e.error))?;
    Ok(())
}

/// Writes `bytes` as the entry `name` of the directory `dir` atomically, replacing what is
/// there (a symbolic link included, which is not followed), as `ssmc build` does with every
/// file of an artifact.
pub fn write_into_dir(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(name);
    let cannot = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".ssmc-tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(cannot)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(cannot)?;
    tmp.persist(&path).map_err(|e| cannot(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbolic_link_is_followed_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("t");
        std::fs::write(&target, b"old").expect("write");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("t", &link).expect("symlink");
        write_atomically(&link, b"new").expect("writes");
        assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink());
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
    }

    #[test]
    fn a_device_is_refused_by_kind() {
        let e = resolve(Path::new("/dev/null")).expect_err("refused");
        assert!(e.contains("a character device"), "{e}");
    }

    #[test]
    fn an_output_equal_to_an_input_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        let hard = dir.path().join("h");
        std::fs::hard_link(&f, &hard).expect("link");
        let reads = [Role { what: "the --inputs file", path: &f }];
        let e = check_outputs(&reads, &[Role { what: "--output", path: &hard }]).expect_err("refused");
        assert!(e.contains("same file"), "{e}");
        let new = dir.path().join("new");
        let writes = [Role { what: "--output", path: &new }, Role { what: "--save-inputs", path: &new }];
        assert!(check_outputs(&reads, &writes).is_err());
    }
}
