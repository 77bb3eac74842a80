//! Program volumes read from the store block by block while a controller (or the fs API) uses
//! them, and the blocks a call wrote turned into the stage's [`VolumeWrite`].
//!
//! Opening a volume costs nothing: the store is first asked when `fatfs` first touches the volume
//! (a controller that never calls `fs` reads nothing), and then only for the blocks it touches.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use zkcoproc_store::{Store, StoreError, VolumeWrite, MAX_BLOCKS_PER_READ};
use zkcoproc_vfs::{BlockSource, Opened, VfsError, Volume, BLOCK_SIZE};

use crate::{Coordinator, CoordinatorError};

/// Counters of volume traffic (`/metrics`).
#[derive(Clone, Debug, Default)]
pub(crate) struct VolumeCounters {
    /// volumes whose stored version was looked up (a call or fs request that touched its volume)
    pub(crate) opens: Counter,
    /// blocks read from the store
    pub(crate) blocks_read: Counter,
    /// blocks committed
    pub(crate) blocks_written: Counter,
    /// stages run again because another replica changed blocks they used
    pub(crate) reruns: Counter,
}

/// What one use of a volume learned from the store: the version it read, and whether that
/// version went away underneath it (another replica committed too many versions meanwhile).
#[derive(Clone, Debug, Default)]
pub(crate) struct Session(Arc<Mutex<SessionState>>);

#[derive(Debug, Default)]
struct SessionState {
    /// the version the volume was opened at (0: none stored yet); `None`: never opened
    base: Option<u64>,
    /// the store replaced the version while it was being read
    changed: bool,
}

impl Session {
    fn with<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> T {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether the version read was replaced while in use: what was read may be inconsistent,
    /// so the stage must run again.
    pub(crate) fn changed(&self) -> bool {
        self.with(|s| s.changed)
    }

    /// Whether the volume was opened at all: a call that never touched `fs` read and wrote
    /// nothing of it, so what it returns does not depend on the volume.
    pub(crate) fn opened(&self) -> bool {
        self.with(|s| s.base.is_some())
    }

    /// The blocks `volume` wrote, as a write based on the version it was opened at (`None` if
    /// it wrote nothing).
    pub(crate) fn write(&self, program_id: &str, volume: Option<Volume>) -> Option<VolumeWrite> {
        let changes = volume?.changes();
        if changes.written.is_empty() {
            return None;
        }
        let base = self.with(|s| s.base).unwrap_or(0);
        let (size, written, touched) = (changes.size, changes.written, changes.touched);
        Some(VolumeWrite { program_id: program_id.to_owned(), base, size, written, touched })
    }
}

/// The store as a volume's [`BlockSource`], used from a blocking thread.
struct StoreSource {
    store: Arc<dyn Store>,
    program_id: String,
    default_size: u64,
    handle: tokio::runtime::Handle,
    session: Session,
    counters: VolumeCounters,
}

impl StoreSource {
    fn wait<T>(&self, f: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, VfsError> {
        self.handle.block_on(f).map_err(|e| {
            if matches!(e, StoreError::VolumeChanged(_)) {
                self.session.with(|s| s.changed = true);
            }
            VfsError::Unavailable(e.to_string())
        })
    }
}

impl BlockSource for StoreSource {
    fn open(&mut self) -> Result<Opened, VfsError> {
        self.counters.opens.inc();
        if let Some(head) = self.wait(self.store.volume(&self.program_id))? {
            self.session.with(|s| s.base = Some(head.version));
            return Ok(Opened::Stored(head.size));
        }
        let program = self.wait(self.store.program(&self.program_id))?;
        let program =
            program.ok_or_else(|| VfsError::Unavailable(format!("program {} is gone", self.program_id)))?;
        self.session.with(|s| s.base = Some(0));
        Ok(Opened::New(program.volume_size.unwrap_or(self.default_size)))
    }

    fn read_blocks(&mut self, first: u64, count: u64) -> Result<Vec<(u64, Vec<u8>)>, VfsError> {
        let Some(version) = self.session.with(|s| s.base).filter(|&v| v > 0) else {
            return Ok(Vec::new());
        };
        let blocks = self.wait(self.store.volume_blocks(&self.program_id, version, first, count))?;
        self.counters.blocks_read.inc_by(count);
        Ok(blocks)
    }
}

/// A program's whole volume image as a stream of chunks, read block by block at one version.
pub struct VolumeExport {
    /// the image size in bytes
    pub size: u64,
    chunks: ExportChunks,
}

enum ExportChunks {
    /// the blocks a fresh format writes; every other block is zeros
    Fresh(std::collections::BTreeMap<u64, Vec<u8>>),
    /// read from the store at `version`, pinned by `pin` (whose store it reads)
    Stored { program_id: String, version: u64, counters: VolumeCounters, pin: ExportPin },
}

/// How long an export may keep its version pinned in all: then it renews the pin no more, and
/// reads on only while its version is among the last [`VOLUME_VERSIONS_KEPT`] (the block rows a
/// pin keeps grow with what the program writes meanwhile, so a pin must not last for ever).
///
/// [`VOLUME_VERSIONS_KEPT`]: zkcoproc_store::VOLUME_VERSIONS_KEPT
pub const EXPORT_PIN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// An export's pin on its version (see [`Store::pin_volume`]), renewed at each chunk and
/// dropped with the export.
struct ExportPin {
    store: Arc<dyn Store>,
    id: String,
    /// how long the pin lasts past each chunk read
    hold: std::time::Duration,
    taken: std::time::Instant,
}

impl Drop for ExportPin {
    fn drop(&mut self) {
        let (store, id) = (self.store.clone(), std::mem::take(&mut self.id));
        // Without a runtime (a process ending) the pin expires by itself.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.unpin_volume(&id).await {
                    tracing::warn!(pin = %id, error = %e, "could not drop a volume pin; it expires by itself");
                }
            });
        }
    }
}

impl VolumeExport {
    /// The bytes from block `first` on, up to [`MAX_BLOCKS_PER_READ`] blocks; empty at the end.
    pub async fn chunk(&self, first: u64) -> Result<Vec<u8>, CoordinatorError> {
        let blocks = self.size.div_ceil(BLOCK_SIZE as u64);
        let count = blocks.saturating_sub(first).min(MAX_BLOCKS_PER_READ);
        if count == 0 {
            return Ok(Vec::new());
        }
        let found: Vec<(u64, Vec<u8>)> = match &self.chunks {
            ExportChunks::Fresh(blocks) => {
                blocks.range(first..first + count).map(|(i, b)| (*i, b.clone())).collect()
            }
            ExportChunks::Stored { program_id, version, counters, pin } => {
                let store = &pin.store;
                let left = EXPORT_PIN_LIFETIME.saturating_sub(pin.taken.elapsed());
                if !left.is_zero() && !store.renew_volume_pin(&pin.id, pin.hold.min(left)).await? {
                    // Expired and dropped by a commit: the read below succeeds only while the
                    // version is still among the kept ones.
                    tracing::debug!(program = %program_id, version, "volume export pin lost");
                }
                counters.blocks_read.inc_by(count);
                store.volume_blocks(program_id, *version, first, count).await?
            }
        };
        let len = usize::try_from(count).unwrap_or(0) * BLOCK_SIZE;
        let mut out = vec![0u8; len];
        for (i, bytes) in found {
            let at =
                usize::try_from(i.saturating_sub(first)).unwrap_or(usize::MAX).saturating_mul(BLOCK_SIZE);
            if i < first || i >= first + count || bytes.len() > BLOCK_SIZE {
                return Err(CoordinatorError::Store(StoreError::Corrupt(format!(
                    "volume block {i} out of place"
                ))));
            }
            out[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        let end = (first + count).saturating_mul(BLOCK_SIZE as u64);
        if end > self.size {
            out.truncate(len - usize::try_from(end - self.size).unwrap_or(0));
        }
        Ok(out)
    }

    /// Blocks per chunk.
    pub const BLOCKS_PER_CHUNK: u64 = MAX_BLOCKS_PER_READ;
}

impl Coordinator {
    /// A program's volume, read nothing yet, and the session that will say which version it
    /// read. Use it from a blocking thread.
    pub(crate) fn open_volume(&self, program_id: &str) -> (Volume, Session) {
        let session = Session::default();
        let source = StoreSource {
            store: self.store.clone(),
            program_id: program_id.to_owned(),
            default_size: self.config.volume_size,
            handle: tokio::runtime::Handle::current(),
            session: session.clone(),
            counters: self.metrics.volume.clone(),
        };
        (Volume::lazy(Box::new(source)), session)
    }

    /// Runs `f` on the program's volume on a blocking thread; again (a few times) when another
    /// replica replaced the version it read meanwhile.
    pub(crate) async fn with_volume<T: Send + 'static>(
        &self,
        program_id: &str,
        f: impl Fn(&mut Volume) -> Result<T, VfsError> + Send + Sync + Clone + 'static,
    ) -> Result<T, CoordinatorError> {
        self.program(program_id).await?;
        let mut tries = 0;
        loop {
            let (mut volume, session) = self.open_volume(program_id);
            let f = f.clone();
            let out = crate::blocking(move || Ok(f(&mut volume))).await?;
            tries += 1;
            match out {
                Err(_) if session.changed() && tries < 5 => continue,
                other => return Ok(other?),
            }
        }
    }

    /// A program's whole FAT-16 image as a stream of chunks (for export and independent checks),
    /// read at the version stored when it starts. A fresh program's volume is formatted in memory.
    ///
    /// The version is pinned while the export lasts, so commits meanwhile do not take it away:
    /// each chunk read keeps it for `hold` more (up to [`EXPORT_PIN_LIFETIME`] in all), and
    /// dropping the export drops the pin.
    pub async fn volume_export(
        &self,
        program_id: &str,
        hold: std::time::Duration,
    ) -> Result<VolumeExport, CoordinatorError> {
        let program = self.program(program_id).await?;
        let id = format!("export-{}", uuid::Uuid::now_v7().simple());
        if let Some(head) = self.store.pin_volume(program_id, &id, hold).await? {
            self.metrics.volume.opens.inc();
            let pin = ExportPin { store: self.store.clone(), id, hold, taken: std::time::Instant::now() };
            let (program_id, counters) = (program_id.to_owned(), self.metrics.volume.clone());
            let chunks = ExportChunks::Stored { program_id, version: head.version, counters, pin };
            return Ok(VolumeExport { size: head.size, chunks });
        }
        let size = program.volume_size.unwrap_or(self.config.volume_size);
        let formatted = crate::blocking(move || Ok(Volume::format(size)?.changes())).await?;
        let blocks = formatted.written.into_iter().filter(|(_, b)| !b.is_empty()).collect();
        Ok(VolumeExport { size, chunks: ExportChunks::Fresh(blocks) })
    }
}
