//! Files and folders that appear whole or not at all.
//!
//! Everything a run or an export keeps is written under a temporary name
//! beside its destination and renamed into place, so a full disk or a
//! killed process leaves the previous file intact (never a truncated one),
//! and a failed write removes its temporary file or folder. Files are
//! created with the process's usual mode (0644 under the common umask), so
//! an exported model is readable by the people it is shared with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A hidden sibling of `path`, `.NAME.TAG-PID`, in the same folder, so
/// a rename never crosses a file system.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically, naming `path` in any error.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_with(path, |tmp| {
        std::fs::write(tmp, bytes.as_ref()).map_err(anyhow::Error::from)
    })
}

/// Lets `fill` write the file at a temporary path, then renames it to
/// `path`; on failure the temporary file is removed and the error names
/// `path`.
pub fn write_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = sibling(path, "tmp");
    let result = fill(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Builds a folder at a temporary path with `fill`, then puts it at `dir`
/// (replacing what was there only once the new one is complete). On failure
/// the temporary folder is removed and the error names `dir`.
pub fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = sibling(dir, "tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let result = std::fs::create_dir_all(&tmp)
        .map_err(anyhow::Error::from)
        .and_then(|()| fill(&tmp))
        .and_then(|()| {
            // The old folder is moved aside, not removed, until the new one
            // is in place: a crash in between leaves one of them whole.
            let old = sibling(dir, "old");
            let had = dir.exists();
            if had {
                let _ = std::fs::remove_dir_all(&old);
                std::fs::rename(dir, &old)?;
            }
            if let Err(e) = std::fs::rename(&tmp, dir) {
                if had {
                    let _ = std::fs::rename(&old, dir);
                }
                return Err(e.into());
            }
            if had {
                let _ = std::fs::remove_dir_all(&old);
            }
            Ok(())
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.with_context(|| format!("writing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        write(&p, b"good").unwrap();
        let err = write_with(&p, |tmp| {
            std::fs::write(tmp, b"trunc")?;
            anyhow::bail!("No space left on device")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("tokenizer.json"), "{err:#}");
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "the temporary file was removed");

        let out = dir.path().join("model");
        write_dir(&out, |tmp| Ok(std::fs::write(tmp.join("a"), b"1")?)).unwrap();
        let err = write_dir(&out, |tmp| {
            std::fs::write(tmp.join("a"), b"2")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("model"), "{err:#}");
        assert_eq!(std::fs::read(out.join("a")).unwrap(), b"1");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary folder left: {names:?}");
    }
}
