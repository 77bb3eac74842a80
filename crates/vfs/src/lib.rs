//! Per-program FAT-16 volumes for zkcoproc controllers.
//!
//! A [`Volume`] is a FAT-16 disk image of fixed-size blocks ([`BLOCK_SIZE`]) manipulated with the
//! `fatfs` crate. A block is read from the volume's [`BlockSource`] (the service's store) the first
//! time `fatfs` touches it, and the blocks written are kept apart: a commit stores only those
//! ([`Volume::changes`]), and a call that never touches the volume reads nothing. Paths are Unix-like
//! and absolute (`/var/share/proof.bin`), every component an 8.3 name (1–8 name characters, an
//! optional extension of 1–3), matched case-insensitively (stored upper-case). Anything else is
//! rejected by [`parse_path`] before the image is touched. A failed mutation leaves the image
//! exactly as it was, so a full volume gives [`VfsError::Full`], never a half-written file.
//!
//! Not for persistence or locking: the coordinator serializes updates per program and commits
//! the changed blocks only when the controller call that produced them succeeded.
//!
//! Start from [`Volume::format`], [`Volume::open`] and [`Volume::write`].

use std::io::{Read, Write};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

mod device;

use device::Device;
pub use device::{BlockSource, Changes, ImageSource, Opened, BLOCK_SIZE, FIRST_READ, READ_AHEAD};

/// Default volume size: 256 MiB.
pub const DEFAULT_SIZE: u64 = 256 << 20;
/// Smallest volume we format (FAT-16 needs at least 4085 clusters).
pub const MIN_SIZE: u64 = 4 << 20;
/// Largest volume we format: FAT-16 with 32 KiB clusters holds at most 65 524 clusters (about
/// 2 047 MiB); 2 000 MiB stays below with room for the FATs and the root directory.
pub const MAX_SIZE: u64 = 2000 << 20;
/// Deepest directory nesting accepted.
pub const MAX_DEPTH: usize = 8;

/// Why a filesystem operation failed. [`VfsError::code`] gives the API/controller error code.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum VfsError {
    /// The path is not an absolute path of 8.3 components.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// the path given
        path: String,
        /// what is wrong with it
        reason: String,
    },
    /// No file or directory at the path.
    #[error("`{0}` not found")]
    NotFound(String),
    /// A file was expected but the path is a directory, or the reverse.
    #[error("`{0}`: {1}")]
    WrongKind(String, &'static str),
    /// The volume has no room left.
    #[error("volume is full")]
    Full,
    /// The image is not a FAT-16 volume, or the operation failed inside the filesystem.
    #[error("filesystem error: {0}")]
    Corrupt(String),
    /// The requested volume size is out of range.
    #[error("volume size {0} bytes is outside {MIN_SIZE}..={MAX_SIZE}")]
    BadSize(u64),
    /// The volume's blocks could not be read from where they are stored.
    #[error("volume unavailable: {0}")]
    Unavailable(String),
}

impl VfsError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VfsError::InvalidPath { .. } => "vfs_invalid_path",
            VfsError::NotFound(_) => "vfs_not_found",
            VfsError::WrongKind(..) => "vfs_wrong_kind",
            VfsError::Full => "vfs_full",
            VfsError::Corrupt(_) | VfsError::BadSize(_) => "vfs_error",
            VfsError::Unavailable(_) => "vfs_unavailable",
        }
    }
}

fn io_error(e: &std::io::Error) -> VfsError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<VfsError>()) {
        Some(inner) => inner.clone(),
        None if e.to_string().contains("No space left") => VfsError::Full,
        None => VfsError::Corrupt(e.to_string()),
    }
}

fn mount_error(e: &std::io::Error) -> VfsError {
    match io_error(e) {
        VfsError::Corrupt(m) => VfsError::Corrupt(format!("not a FAT volume: {m}")),
        other => other,
    }
}

fn fat_type(dev: &mut Device) -> Result<FatType, VfsError> {
    dev.rewind();
    let fs = FileSystem::new(dev, FsOptions::new()).map_err(|e| mount_error(&e))?;
    Ok(fs.fat_type())
}

/// Characters FAT allows in short names besides A–Z and 0–9.
const SPECIAL: &[u8] = b"!#$%&'()-@^_`{}~";

fn invalid(path: &str, reason: impl Into<String>) -> VfsError {
    VfsError::InvalidPath { path: path.to_owned(), reason: reason.into() }
}

/// Parses an absolute Unix-like path into upper-case 8.3 components. `/` is the root (no
/// components).
pub fn parse_path(path: &str) -> Result<Vec<String>, VfsError> {
    if path.len() > 255 {
        return Err(invalid(path, "longer than 255 characters"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(invalid(path, "must be absolute (start with /)"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for comp in rest.split('/') {
        out.push(parse_component(path, comp)?);
    }
    if out.len() > MAX_DEPTH {
        return Err(invalid(path, format!("deeper than {MAX_DEPTH} levels")));
    }
    Ok(out)
}

fn parse_component(path: &str, comp: &str) -> Result<String, VfsError> {
    match comp {
        "" => return Err(invalid(path, "empty component (`//`)")),
        "." | ".." => return Err(invalid(path, "`.` and `..` are not allowed")),
        _ => {}
    }
    let (name, ext) = match comp.split_once('.') {
        Some((n, e)) => (n, Some(e)),
        None => (comp, None),
    };
    if name.is_empty() || name.len() > 8 {
        return Err(invalid(path, format!("`{comp}`: the name part must have 1 to 8 characters")));
    }
    if let Some(ext) = ext {
        if ext.is_empty() || ext.len() > 3 {
            return Err(invalid(path, format!("`{comp}`: the extension must have 1 to 3 characters")));
        }
        if ext.contains('.') {
            return Err(invalid(path, format!("`{comp}`: only one `.` is allowed")));
        }
    }
    let ok = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || SPECIAL.contains(&b));
    if !ok(name) || !ext.is_none_or(ok) {
        return Err(invalid(
            path,
            format!("`{comp}`: only letters, digits and {} are allowed", String::from_utf8_lossy(SPECIAL)),
        ));
    }
    Ok(comp.to_ascii_uppercase())
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// the 8.3 name, upper-case
    pub name: String,
    /// whether it is a directory
    pub is_dir: bool,
    /// size in bytes (0 for directories)
    pub size: u64,
}

/// A FAT-16 volume: blocks read on first touch, the blocks written kept apart.
pub struct Volume {
    state: State,
}

enum State {
    /// nothing read yet: the source is asked what it holds on first use
    Unopened(Box<dyn BlockSource>),
    Ready(Device),
    /// the first use failed; every later one gives the same error
    Failed(VfsError),
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = match &self.state {
            State::Ready(dev) => Some(dev.size()),
            _ => None,
        };
        f.debug_struct("Volume").field("size", &size).finish()
    }
}

fn check_size(size: u64) -> Result<(), VfsError> {
    match (MIN_SIZE..=MAX_SIZE).contains(&size) {
        true => Ok(()),
        false => Err(VfsError::BadSize(size)),
    }
}

impl Volume {
    /// A freshly formatted FAT-16 volume of `size` bytes (every block written, none stored).
    pub fn format(size: u64) -> Result<Volume, VfsError> {
        check_size(size)?;
        let mut dev = Device::new(size, None);
        // The FAT type is decided by the cluster count (FAT16: 4085..65525), so pick the largest
        // cluster that still leaves at least 8192 clusters, well inside the FAT16 range.
        let mut cluster: u32 = 32 << 10;
        while cluster > 512 && size / u64::from(cluster) < 8192 {
            cluster /= 2;
        }
        let options = FormatVolumeOptions::new()
            .fat_type(FatType::Fat16)
            .bytes_per_cluster(cluster)
            .volume_label(*b"ZKCOPROC   ");
        fatfs::format_volume(&mut dev, options).map_err(|e| io_error(&e))?;
        Ok(Volume { state: State::Ready(dev) })
    }

    /// A whole image in memory, checked to mount as FAT-16.
    pub fn open(image: Vec<u8>) -> Result<Volume, VfsError> {
        let mut v = Volume::lazy(Box::new(ImageSource(image)));
        v.device()?;
        Ok(v)
    }

    /// A volume over `source`, read nothing yet: the first operation asks the source what it
    /// holds (formatting a new volume if it holds none) and checks that it mounts as FAT-16.
    pub fn lazy(source: Box<dyn BlockSource>) -> Volume {
        Volume { state: State::Unopened(source) }
    }

    fn device(&mut self) -> Result<&mut Device, VfsError> {
        if let State::Unopened(..) = self.state {
            let State::Unopened(mut source) =
                std::mem::replace(&mut self.state, State::Failed(VfsError::Full))
            else {
                return Err(VfsError::Corrupt("volume state changed while opening".into()));
            };
            self.state = match source.open() {
                Ok(Opened::New(size)) => match Volume::format(size) {
                    Ok(v) => v.state,
                    Err(e) => State::Failed(e),
                },
                Ok(Opened::Stored(size)) if check_size(size).is_err() => {
                    State::Failed(VfsError::Corrupt(format!("stored volume has {size} bytes")))
                }
                Ok(Opened::Stored(size)) => {
                    let mut dev = Device::new(size, Some(source));
                    match fat_type(&mut dev) {
                        Ok(FatType::Fat16) => State::Ready(dev),
                        Ok(other) => {
                            State::Failed(VfsError::Corrupt(format!("volume is {other:?}, not FAT16")))
                        }
                        Err(e) => State::Failed(e),
                    }
                }
                Err(e) => State::Failed(e),
            };
        }
        match &mut self.state {
            State::Ready(dev) => Ok(dev),
            State::Failed(e) => Err(e.clone()),
            State::Unopened(..) => Err(VfsError::Corrupt("volume not opened".into())),
        }
    }

    /// Every byte of the image (reads every block not read yet).
    pub fn image(&mut self) -> Result<Vec<u8>, VfsError> {
        self.device()?.image().map_err(|e| io_error(&e))
    }

    /// What the volume wrote and read since it was opened (nothing if it was never used).
    pub fn changes(&self) -> Changes {
        match &self.state {
            State::Ready(dev) => dev.changes(),
            _ => Changes::default(),
        }
    }

    /// The size in bytes, opening the volume if needed.
    pub fn size(&mut self) -> Result<u64, VfsError> {
        Ok(self.device()?.size())
    }

    fn with_fs<T>(
        &mut self,
        f: impl FnOnce(&FileSystem<&mut Device>) -> Result<T, VfsError>,
    ) -> Result<T, VfsError> {
        let dev = self.device()?;
        dev.rewind();
        let fs = FileSystem::new(dev, FsOptions::new()).map_err(|e| mount_error(&e))?;
        let out = f(&fs)?;
        fs.unmount().map_err(|e| io_error(&e))?;
        Ok(out)
    }

    /// Runs a mutation; on any error the volume is restored to what it was before.
    fn mutate<T>(
        &mut self,
        f: impl FnOnce(&FileSystem<&mut Device>) -> Result<T, VfsError>,
    ) -> Result<T, VfsError> {
        let before = self.device()?.dirty.clone();
        let out = self.with_fs(f);
        if out.is_err() {
            self.device()?.dirty = before;
        }
        out
    }

    /// Reads a whole file.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, VfsError> {
        let comps = parse_path(path)?;
        if comps.is_empty() {
            return Err(VfsError::WrongKind(path.to_owned(), "is a directory"));
        }
        let joined = comps.join("/");
        self.with_fs(|fs| {
            let root = fs.root_dir();
            let mut file = match root.open_file(&joined) {
                Ok(f) => f,
                Err(_) if root.open_dir(&joined).is_ok() => {
                    return Err(VfsError::WrongKind(path.to_owned(), "is a directory"))
                }
                Err(e) => return Err(not_found_or(path, &e)),
            };
            let mut out = Vec::new();
            file.read_to_end(&mut out).map_err(|e| io_error(&e))?;
            Ok(out)
        })
    }

    /// Writes (creates or replaces) a file, creating missing parent directories.
    pub fn write(&mut self, path: &str, data: &[u8]) -> Result<(), VfsError> {
        let comps = parse_path(path)?;
        let Some((file_name, parents)) = comps.split_last() else {
            return Err(VfsError::WrongKind(path.to_owned(), "is a directory"));
        };
        self.mutate(|fs| {
            let mut dir = fs.root_dir();
            for p in parents {
                dir = match dir.open_dir(p) {
                    Ok(d) => d,
                    Err(_) => dir.create_dir(p).map_err(|e| io_error(&e))?,
                };
            }
            let mut file = dir.create_file(file_name).map_err(|e| io_error(&e))?;
            file.truncate().map_err(|e| io_error(&e))?;
            file.write_all(data).map_err(|e| io_error(&e))?;
            file.flush().map_err(|e| io_error(&e))?;
            Ok(())
        })
    }

    /// Lists a directory, sorted by name (`.` and `..` omitted).
    pub fn list(&mut self, path: &str) -> Result<Vec<Entry>, VfsError> {
        let comps = parse_path(path)?;
        let joined = comps.join("/");
        self.with_fs(|fs| {
            let dir = if joined.is_empty() {
                fs.root_dir()
            } else {
                fs.root_dir().open_dir(&joined).map_err(|e| not_found_or(path, &e))?
            };
            let mut out = Vec::new();
            for entry in dir.iter() {
                let entry = entry.map_err(|e| io_error(&e))?;
                let name = String::from_utf8_lossy(entry.short_file_name_as_bytes()).into_owned();
                if name == "." || name == ".." {
                    continue;
                }
                out.push(Entry {
                    name,
                    is_dir: entry.is_dir(),
                    size: if entry.is_dir() { 0 } else { entry.len() },
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    /// Removes a file or an empty directory.
    pub fn remove(&mut self, path: &str) -> Result<(), VfsError> {
        let comps = parse_path(path)?;
        if comps.is_empty() {
            return Err(VfsError::WrongKind(path.to_owned(), "the root cannot be removed"));
        }
        let joined = comps.join("/");
        self.mutate(|fs| fs.root_dir().remove(&joined).map_err(|e| not_found_or(path, &e)))
    }

    /// Whether a file or directory exists at `path`.
    pub fn exists(&mut self, path: &str) -> Result<bool, VfsError> {
        let comps = parse_path(path)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(true);
        };
        let parent = parents.join("/");
        self.with_fs(|fs| {
            let dir = if parent.is_empty() {
                fs.root_dir()
            } else {
                match fs.root_dir().open_dir(&parent) {
                    Ok(d) => d,
                    Err(_) => return Ok(false),
                }
            };
            for entry in dir.iter() {
                if entry.map_err(|e| io_error(&e))?.short_file_name_as_bytes() == last.as_bytes() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}

fn not_found_or(path: &str, e: &std::io::Error) -> VfsError {
    match e.kind() {
        std::io::ErrorKind::NotFound => VfsError::NotFound(path.to_owned()),
        std::io::ErrorKind::InvalidInput => VfsError::WrongKind(path.to_owned(), "wrong kind of entry"),
        _ => io_error(e),
    }
}

#[cfg(test)]
mod tests;
