//! Maps a corpus file into memory so documents are `&str` slices into the
//! page cache, never copies on the heap: a 10 GB dump costs address space,
//! not resident anonymous memory.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

/// The bytes of one corpus file: a read-only map, or (where mapping is not
/// possible, e.g. an empty file or a pipe) a plain buffer.
pub enum FileBytes {
    /// A read-only memory map of the whole file.
    Mapped(Mmap),
    /// Bytes read into the heap: the fallback.
    Read(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

impl FileBytes {
    /// Opens `path`, mapping it when it is a regular, non-empty file.
    pub fn open(path: &Path) -> std::io::Result<FileBytes> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_file() && meta.len() > 0 {
            // SAFETY: see `map`; the corpus is read-only input that pretext
            // never writes, and a user who truncates it mid-run gets SIGBUS
            // as with every mmap-based reader (ripgrep documents the same).
            if let Ok(map) = unsafe { map(&file) } {
                return Ok(FileBytes::Mapped(map));
            }
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(FileBytes::Read(buf))
    }

    /// True when the bytes are a memory map rather than a heap copy.
    pub fn is_mapped(&self) -> bool {
        matches!(self, FileBytes::Mapped(_))
    }
}

/// Maps `file` read-only and tells the kernel it will be read front to back.
///
/// # Safety
///
/// The caller must ensure the file is not modified or truncated while the map
/// is alive; otherwise the slices handed out may change under the reader or
/// touching them may fault.
unsafe fn map(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: forwarded to the caller (see the function's safety section).
    let map = unsafe { Mmap::map(file)? };
    #[cfg(unix)]
    {
        // Advice is a hint; a kernel that refuses it reads the file all the same.
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(map)
}
