//! The block device a [`crate::Volume`] mounts: fixed-size blocks fetched from a
//! [`BlockSource`] the first time they are touched, and the blocks written since the volume was
//! opened kept apart, so a commit stores only those.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::VfsError;

/// Bytes per block: the unit a volume is stored, read and committed in.
///
/// 4 KiB is one FAT-16 cluster of a volume up to 256 MiB (the default size), the page size of
/// SQLite and of PostgreSQL's storage, and the unit a small change dirties: a commit of a small
/// file stores the FAT sectors, directory entry and data it changed, a few tens of KiB (it stored
/// a few hundred with 64 KiB blocks, most of it unchanged bytes written again to the store's log:
/// measured in `bench/RESULTS.md`, P2). A 2 000 MiB volume is at most 512 000 rows; reading is
/// batched by [`READ_AHEAD`].
pub const BLOCK_SIZE: usize = 4 << 10;

/// Most blocks fetched per source read (512 KiB): the block asked for and the ones after it. A
/// fetch that is not where the previous one ended reads [`FIRST_READ`] blocks; each fetch that
/// continues the previous one reads twice as many as it did, up to this many, so a file read
/// through is one query per 512 KiB and a look at a FAT sector or a directory reads 16 KiB.
pub const READ_AHEAD: u64 = 128;

/// Blocks fetched by a read that does not continue the previous one.
pub const FIRST_READ: u64 = 4;

/// What a [`BlockSource`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// a stored volume of this many bytes
    Stored(u64),
    /// no volume yet: format one of this many bytes
    New(u64),
}

/// Where a volume's stored blocks come from (the service's store, or memory).
pub trait BlockSource: Send {
    /// What is stored. Called once, on the volume's first use, before any block is read.
    fn open(&mut self) -> Result<Opened, VfsError>;

    /// Blocks `first..first + count` as stored: `(index, bytes)`, each [`BLOCK_SIZE`] bytes or
    /// empty; a block not returned (or empty) is all zeros.
    fn read_blocks(&mut self, first: u64, count: u64) -> Result<Vec<(u64, Vec<u8>)>, VfsError>;
}

/// A whole image in memory as a block source (tests, and images imported from elsewhere).
pub struct ImageSource(pub Vec<u8>);

impl BlockSource for ImageSource {
    fn open(&mut self) -> Result<Opened, VfsError> {
        Ok(Opened::Stored(self.0.len() as u64))
    }

    fn read_blocks(&mut self, first: u64, count: u64) -> Result<Vec<(u64, Vec<u8>)>, VfsError> {
        let mut out = Vec::new();
        for index in first..first.saturating_add(count) {
            let start = usize::try_from(index).ok().and_then(|i| i.checked_mul(BLOCK_SIZE));
            match start.and_then(|s| self.0.get(s..(s + BLOCK_SIZE).min(self.0.len()))) {
                Some(bytes) if !bytes.is_empty() => out.push((index, bytes.to_vec())),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// What a volume changed and read since it was opened: what a commit needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// the volume's size in bytes
    pub size: u64,
    /// the blocks written, in index order; an all-zero block is given as empty bytes
    pub written: Vec<(u64, Vec<u8>)>,
    /// the blocks read from the source or written: if none of them changed in the store
    /// meanwhile, the writes are what they would have been on the newer version
    pub touched: Vec<u64>,
}

/// The device: clean blocks as read, dirty blocks as written, and a position.
pub(crate) struct Device {
    size: u64,
    pos: u64,
    source: Option<Box<dyn BlockSource>>,
    clean: HashMap<u64, Arc<Vec<u8>>>,
    /// the blocks written; `Arc` so that a snapshot for rollback is cheap
    pub(crate) dirty: BTreeMap<u64, Arc<Vec<u8>>>,
    /// the blocks read from the source
    fetched: BTreeSet<u64>,
    /// where the last fetch ended, and how many blocks it read (the read-ahead window)
    ahead: (u64, u64),
}

impl Device {
    /// A device of `size` bytes over `source` (`None`: all zeros).
    pub(crate) fn new(size: u64, source: Option<Box<dyn BlockSource>>) -> Device {
        Device {
            size,
            pos: 0,
            source,
            clean: HashMap::new(),
            dirty: BTreeMap::new(),
            fetched: BTreeSet::new(),
            ahead: (u64::MAX, 0),
        }
    }

    /// Back to the first byte (`fatfs` expects a fresh mount to start there).
    pub(crate) fn rewind(&mut self) {
        self.pos = 0;
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn blocks(&self) -> u64 {
        self.size.div_ceil(BLOCK_SIZE as u64)
    }

    /// Block `index` as it is now, fetching it (and the next few not yet fetched) if needed.
    fn block(&mut self, index: u64) -> io::Result<&Arc<Vec<u8>>> {
        if !self.cached(index) {
            self.fetch(index)?;
        }
        let block = self.dirty.get(&index).or_else(|| self.clean.get(&index));
        block.ok_or_else(|| io::Error::other("block vanished from the cache"))
    }

    fn fetch(&mut self, index: u64) -> io::Result<()> {
        let (end, last) = self.ahead;
        let window = if index == end { (last * 2).clamp(FIRST_READ, READ_AHEAD) } else { FIRST_READ };
        let mut count = 1;
        while count < window && index + count < self.blocks() && !self.cached(index + count) {
            count += 1;
        }
        let mut got = match self.source.as_mut() {
            Some(source) => source.read_blocks(index, count).map_err(io::Error::other)?,
            None => Vec::new(),
        };
        self.ahead = (index + count, count);
        got.retain(|(i, _)| (index..index + count).contains(i));
        let mut blocks: HashMap<u64, Vec<u8>> = got.into_iter().collect();
        for i in index..index + count {
            let mut bytes = blocks.remove(&i).unwrap_or_default();
            if bytes.len() > BLOCK_SIZE {
                return Err(io::Error::other(format!("stored block {i} has {} bytes", bytes.len())));
            }
            bytes.resize(BLOCK_SIZE, 0);
            if self.source.is_some() {
                self.fetched.insert(i);
            }
            self.clean.insert(i, Arc::new(bytes));
        }
        Ok(())
    }

    fn cached(&self, index: u64) -> bool {
        self.dirty.contains_key(&index) || self.clean.contains_key(&index)
    }

    /// Every byte of the device, in order (reads every block not read yet).
    pub(crate) fn image(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        for i in 0..self.blocks() {
            out.extend_from_slice(self.block(i)?);
        }
        out.truncate(usize::try_from(self.size).unwrap_or(usize::MAX));
        Ok(out)
    }

    pub(crate) fn changes(&self) -> Changes {
        let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
        let written =
            self.dirty.iter().map(|(&i, b)| (i, if zero(b) { Vec::new() } else { b.to_vec() })).collect();
        let touched = self.fetched.iter().chain(self.dirty.keys()).copied().collect::<BTreeSet<_>>();
        Changes { size: self.size, written, touched: touched.into_iter().collect() }
    }

    /// Splits the position into (block, offset in it, bytes left in it), or `None` at the end.
    fn at(&self) -> Option<(u64, usize, usize)> {
        if self.pos >= self.size {
            return None;
        }
        let block = self.pos / BLOCK_SIZE as u64;
        let offset = (self.pos % BLOCK_SIZE as u64) as usize;
        let left = usize::try_from(self.size - self.pos).unwrap_or(usize::MAX).min(BLOCK_SIZE - offset);
        Some((block, offset, left))
    }
}

impl Read for Device {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((block, offset, left)) = self.at() else { return Ok(0) };
        let n = left.min(buf.len());
        buf[..n].copy_from_slice(&self.block(block)?[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Device {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((block, offset, left)) = self.at() else {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write past the end of the volume"));
        };
        let n = left.min(buf.len());
        if !self.dirty.contains_key(&block) {
            // A block written whole need not be read first.
            let bytes = match (offset, n) {
                (0, BLOCK_SIZE) => Arc::new(vec![0; BLOCK_SIZE]),
                _ => Arc::clone(self.block(block)?),
            };
            self.dirty.insert(block, bytes);
        }
        let Some(dirty) = self.dirty.get_mut(&block) else {
            return Err(io::Error::other("dirty block vanished"));
        };
        Arc::make_mut(dirty)[offset..offset + n].copy_from_slice(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Device {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
