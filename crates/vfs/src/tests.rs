use super::*;

fn vol() -> Volume {
    Volume::format(MIN_SIZE).expect("format")
}

#[test]
fn files_round_trip_with_parent_directories() {
    let mut v = vol();
    v.write("/var/share/proof.bin", b"receipt").expect("write");
    assert_eq!(v.read("/var/share/proof.bin").expect("read"), b"receipt");
    v.write("/var/share/proof.bin", b"shorter").expect("overwrite");
    assert_eq!(v.read("/var/share/proof.bin").expect("read"), b"shorter");
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    v.write("/BIG.DAT", &big).expect("write big");
    assert_eq!(v.read("/big.dat").expect("read big"), big);
    // Survives a round trip through its bytes.
    let mut reopened = Volume::open(v.image().expect("image")).expect("reopen");
    assert_eq!(reopened.read("/VAR/SHARE/PROOF.BIN").expect("read"), b"shorter");
}

#[test]
fn lookups_are_case_insensitive() {
    let mut v = vol();
    v.write("/Logs/Today.Txt", b"x").expect("write");
    for p in ["/logs/today.txt", "/LOGS/TODAY.TXT", "/lOgS/tOdAy.TxT"] {
        assert!(v.exists(p).expect("exists"), "{p}");
        assert_eq!(v.read(p).expect("read"), b"x");
    }
    // Writing another spelling replaces the same file.
    v.write("/LOGS/today.TXT", b"y").expect("write");
    assert_eq!(
        v.list("/logs").expect("list"),
        vec![Entry { name: "TODAY.TXT".into(), is_dir: false, size: 1 }]
    );
}

#[test]
fn names_that_are_not_8_3_are_rejected_before_touching_the_image() {
    let mut v = vol();
    let before = v.image().expect("image");
    for bad in [
        "relative.txt",
        "/../../etc/x",
        "/a/../b",
        "/./a",
        "/a//b",
        "/longername.txt",
        "/name.long",
        "/a.b.c",
        "/.hidden",
        "/name.",
        "/sp ace",
        "/star*.txt",
        "/q?.txt",
        "/back\\slash",
        "/ünï.txt",
        "/a/b/c/d/e/f/g/h/i",
    ] {
        let err = v.write(bad, b"x").expect_err(bad);
        assert_eq!(err.code(), "vfs_invalid_path", "{bad}: {err}");
    }
    let long = format!("/{}", "A/".repeat(130));
    assert_eq!(v.write(&long, b"x").expect_err("long").code(), "vfs_invalid_path");
    assert_eq!(v.image().expect("image"), before, "a rejected write changed the image");
    for good in ["/A", "/a.b", "/ABCDEFGH.XYZ", "/x/y/z/f.t", "/!#$%&'()/-@^_`{}~.txt"] {
        v.write(good, b"ok").expect(good);
        assert_eq!(v.read(good).expect(good), b"ok");
    }
}

#[test]
fn listing_removal_and_missing_entries() {
    let mut v = vol();
    v.write("/d/b.txt", b"bb").expect("write");
    v.write("/d/a.txt", b"a").expect("write");
    v.write("/d/sub/c.txt", b"ccc").expect("write");
    let names: Vec<_> = v.list("/d").expect("list").into_iter().map(|e| (e.name, e.is_dir, e.size)).collect();
    assert_eq!(names, vec![("A.TXT".into(), false, 1), ("B.TXT".into(), false, 2), ("SUB".into(), true, 0)]);
    v.remove("/d/a.txt").expect("remove");
    assert!(!v.exists("/d/a.txt").expect("exists"));
    assert_eq!(v.read("/d/a.txt").expect_err("gone").code(), "vfs_not_found");
    assert_eq!(v.remove("/d/a.txt").expect_err("gone").code(), "vfs_not_found");
    assert_eq!(v.list("/nope").expect_err("missing dir").code(), "vfs_not_found");
    assert_eq!(v.read("/d").expect_err("a dir").code(), "vfs_wrong_kind");
    assert!(!v.exists("/nope/x.txt").expect("exists"));
    assert!(v.exists("/").expect("root"));
    assert_eq!(v.remove("/").expect_err("root").code(), "vfs_wrong_kind");
}

#[test]
fn a_full_volume_reports_full_and_keeps_the_previous_image() {
    let mut v = vol();
    v.write("/keep.txt", b"kept").expect("write");
    let before = v.image().expect("image");
    let err = v.write("/huge.bin", &vec![7u8; MIN_SIZE as usize]).expect_err("too big");
    assert_eq!(err, VfsError::Full);
    assert_eq!(v.image().expect("image"), before, "a failed write changed the image");
    assert_eq!(v.read("/keep.txt").expect("read"), b"kept");
    assert!(!v.exists("/huge.bin").expect("exists"));
    // Filling it file by file also ends in Full, with every earlier file intact.
    let chunk = vec![1u8; 256 << 10];
    let mut written = 0;
    let err = loop {
        match v.write(&format!("/F{written}.BIN"), &chunk) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, VfsError::Full);
    assert!(written > 8, "only {written} files fit");
    for i in 0..written {
        assert_eq!(v.read(&format!("/f{i}.bin")).expect("read").len(), chunk.len());
    }
}

#[test]
fn sizes_and_garbage_images_are_rejected() {
    assert_eq!(Volume::format(1 << 20).expect_err("small").code(), "vfs_error");
    assert_eq!(Volume::format(1 << 40).expect_err("big").code(), "vfs_error");
    assert!(Volume::open(vec![0u8; 1 << 20]).is_err());
    assert!(Volume::open(b"not a disk".to_vec()).is_err());
}

/// A store of blocks as the service keeps them: each commit replaces the blocks it wrote.
#[derive(Clone, Default)]
struct Blocks {
    /// the stored size (0: nothing stored yet)
    size: u64,
    /// the size to format when nothing is stored
    new_size: u64,
    blocks: std::collections::HashMap<u64, Vec<u8>>,
    /// how many `read_blocks` calls and blocks were served
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    fail: bool,
}

impl BlockSource for Blocks {
    fn open(&mut self) -> Result<Opened, VfsError> {
        Ok(if self.size > 0 { Opened::Stored(self.size) } else { Opened::New(self.new_size) })
    }

    fn read_blocks(&mut self, first: u64, count: u64) -> Result<Vec<(u64, Vec<u8>)>, VfsError> {
        if self.fail {
            return Err(VfsError::Unavailable("the store is down".into()));
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.served.fetch_add(usize::try_from(count).expect("count"), Relaxed);
        Ok((first..first + count).filter_map(|i| self.blocks.get(&i).map(|b| (i, b.clone()))).collect())
    }
}

impl Blocks {
    fn lazy(&self, size_if_new: u64) -> Volume {
        Volume::lazy(Box::new(Blocks { new_size: size_if_new, ..self.clone() }))
    }

    fn commit(&mut self, v: &Volume) -> Changes {
        let changes = v.changes();
        self.size = changes.size;
        for (i, bytes) in &changes.written {
            self.blocks.insert(*i, bytes.clone());
        }
        changes
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn a_volume_reads_only_the_blocks_it_touches_and_commits_only_those_it_wrote() {
    let mut store = Blocks::default();
    // A new volume: nothing stored, formatted on first use; the format writes only the blocks of
    // the boot sector, the FATs and the root directory.
    let mut v = store.lazy(DEFAULT_SIZE);
    assert_eq!(v.changes(), Changes::default(), "an unused volume changed");
    v.write("/data/a.bin", &[1u8; 100_000]).expect("write");
    let first = store.commit(&v);
    assert_eq!(first.size, DEFAULT_SIZE);
    let total = DEFAULT_SIZE / BLOCK_SIZE as u64;
    let bytes = |c: &Changes| c.written.len() * BLOCK_SIZE;
    assert!(
        bytes(&first) <= 192 << 10,
        "format + a 100 KB write stored {} of {total} blocks",
        first.written.len()
    );

    // An unused lazy volume reads nothing at all.
    let untouched = store.lazy(DEFAULT_SIZE);
    assert_eq!(untouched.changes(), Changes::default());
    assert_eq!(store.calls(), 0);

    // A small write in the next commit stores the FAT, directory and data blocks, not the volume.
    let mut v = store.lazy(DEFAULT_SIZE);
    v.write("/data/b.txt", b"second").expect("write");
    let second = store.commit(&v);
    assert!(
        !second.written.is_empty() && bytes(&second) <= 24 << 10,
        "a 6-byte write stored {} blocks",
        second.written.len()
    );
    assert!(second.written.iter().all(|(i, _)| second.touched.contains(i)));
    let (reads, served) = (store.calls(), store.served.load(std::sync::atomic::Ordering::Relaxed));
    assert!(
        reads <= 8 && served * BLOCK_SIZE <= 160 << 10,
        "a small write read {served} blocks in {reads} reads"
    );

    // Reading a file back fetches its blocks, read ahead, and not much else.
    let mut v = store.lazy(DEFAULT_SIZE);
    assert_eq!(v.read("/DATA/A.BIN").expect("read"), vec![1u8; 100_000]);
    assert_eq!(v.read("/data/b.txt").expect("read"), b"second");
    assert_eq!(v.changes().written, Vec::new(), "reads wrote blocks");
    let served = store.served.load(std::sync::atomic::Ordering::Relaxed) - served;
    assert!(served * BLOCK_SIZE <= 512 << 10, "reading two small files fetched {served} blocks of {total}");
}

#[test]
fn commits_rebuild_the_same_image_as_one_volume_in_memory() {
    let mut store = Blocks::default();
    let mut whole = Volume::format(MIN_SIZE).expect("format");
    for round in 0..12u8 {
        let mut v = store.lazy(MIN_SIZE);
        let path = format!("/r{}/f{}.bin", round % 3, round % 5);
        let data = vec![round; 5_000 * usize::from(round + 1)];
        if round % 4 == 3 {
            v.remove(&path).ok();
            whole.remove(&path).ok();
        } else {
            v.write(&path, &data).expect("write");
            whole.write(&path, &data).expect("write");
        }
        store.commit(&v);
        let mut reopened = store.lazy(MIN_SIZE);
        assert_eq!(reopened.image().expect("image"), whole.image().expect("image"), "round {round}");
    }
}

#[test]
fn a_failed_write_leaves_the_changes_as_they_were() {
    let mut store = Blocks::default();
    let mut v = store.lazy(MIN_SIZE);
    v.write("/keep.txt", b"kept").expect("write");
    store.commit(&v);
    let mut v = store.lazy(MIN_SIZE);
    v.write("/also.txt", b"also").expect("write");
    let before = v.changes().written;
    assert_eq!(v.write("/huge.bin", &vec![7u8; MIN_SIZE as usize]).expect_err("too big"), VfsError::Full);
    assert_eq!(v.changes().written, before, "a failed write left blocks behind");
}

#[test]
fn a_source_that_fails_is_vfs_unavailable_and_a_bad_stored_volume_is_refused() {
    let mut store = Blocks::default();
    let mut v = store.lazy(MIN_SIZE);
    v.write("/x.txt", b"x").expect("write");
    store.commit(&v);
    let mut down = store.clone();
    down.fail = true;
    let mut v = Volume::lazy(Box::new(down));
    let err = v.read("/x.txt").expect_err("store down");
    assert_eq!(err.code(), "vfs_unavailable", "{err}");
    assert_eq!(v.exists("/x.txt").expect_err("still down").code(), "vfs_unavailable");
    // A stored size out of range, or blocks that are not FAT-16, are refused on first use.
    let mut bad = store.clone();
    bad.size = 1 << 20;
    assert_eq!(Volume::lazy(Box::new(bad)).read("/x.txt").expect_err("size").code(), "vfs_error");
    let mut zeros = Blocks { size: MIN_SIZE, ..Blocks::default() };
    zeros.blocks.clear();
    assert_eq!(Volume::lazy(Box::new(zeros)).list("/").expect_err("zeros").code(), "vfs_error");
}

fn fsck_and_mtype(image: &[u8], file: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("volume.img");
    std::fs::write(&img, image).expect("write image");
    let fsck = std::process::Command::new("fsck.fat")
        .args(["-n", "-v"])
        .arg(&img)
        .output()
        .expect("fsck.fat must be installed (apt-get install dosfstools)");
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(fsck.status.success(), "fsck.fat failed: {report}{}", String::from_utf8_lossy(&fsck.stderr));
    assert!(report.contains("16 bit entries"), "not FAT16: {report}");
    let mtype = std::process::Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg(format!("::{file}"))
        .output()
        .expect("mtype must be installed (apt-get install mtools)");
    assert!(mtype.status.success(), "{}", String::from_utf8_lossy(&mtype.stderr));
    mtype.stdout
}

/// The image is a valid FAT-16 volume to independent tools after many commits: `fsck.fat`
/// (dosfstools) checks it, and `mtype` (mtools) reads a file back. `scripts/test.sh` installs both.
#[test]
fn images_written_through_many_commits_pass_fsck_fat_and_mtools() {
    let mut store = Blocks::default();
    for i in 0..20u32 {
        let mut v = store.lazy(DEFAULT_SIZE);
        v.write(&format!("/var/share/proofs/t{}.bin", i % 7), &vec![9u8; 10_000 * (i as usize + 1)])
            .expect("write");
        v.write("/logs/run.log", format!("hello from zkcoproc, commit {i}\n").as_bytes()).expect("write");
        v.write("/tmp/gone.txt", b"x").expect("write");
        if i % 2 == 0 {
            v.remove("/tmp/gone.txt").expect("remove");
        }
        store.commit(&v);
    }
    let image = store.lazy(DEFAULT_SIZE).image().expect("image");
    assert_eq!(fsck_and_mtype(&image, "/LOGS/RUN.LOG"), b"hello from zkcoproc, commit 19\n");
}

/// A 1 GiB volume: files written across it in several commits read back whole, and the image
/// passes fsck. Only the blocks written are stored.
#[test]
fn a_one_gib_volume_is_written_and_read_back() {
    const GIB: u64 = 1 << 30;
    let mut store = Blocks::default();
    let file = |i: u8| -> Vec<u8> { (0..8usize << 20).map(|j| (j as u8) ^ i).collect() };
    for round in 0..4u8 {
        let mut v = store.lazy(GIB);
        for i in 0..4 {
            v.write(&format!("/big/f{round}_{i}.bin"), &file(round * 4 + i)).expect("write");
        }
        store.commit(&v);
    }
    let stored: usize = store.blocks.values().map(Vec::len).sum();
    assert!(stored < 140 << 20, "128 MiB of files stored {stored} bytes");
    let mut v = store.lazy(GIB);
    assert_eq!(v.size().expect("size"), GIB);
    for round in 0..4u8 {
        for i in 0..4 {
            let read = v.read(&format!("/BIG/F{round}_{i}.BIN")).expect("read");
            assert!(read == file(round * 4 + i), "file {round}_{i} differs");
        }
    }
    let mut last = file(15);
    last.truncate(16);
    assert_eq!(fsck_and_mtype(&v.image().expect("image"), "/BIG/F3_3.BIN")[..16], last[..]);
}

mod props {
    use super::super::*;
    use proptest::prelude::*;

    const ALLOWED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'()-@^_`{}~";

    fn part(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(ALLOWED.chars().collect::<Vec<_>>()), len)
            .prop_map(|cs| cs.into_iter().collect())
    }

    fn name83() -> impl Strategy<Value = String> {
        (part(1..=8), proptest::option::of(part(1..=3)))
            .prop_map(|(n, e)| e.map(|e| format!("{n}.{e}")).unwrap_or(n))
    }

    proptest! {
        /// Every well-formed 8.3 path parses, upper-cased, whatever its case.
        #[test]
        fn valid_8_3_paths_parse_to_upper_case(names in proptest::collection::vec(name83(), 1..=MAX_DEPTH)) {
            let path = format!("/{}", names.join("/"));
            let parsed = parse_path(&path).expect("valid 8.3 path rejected");
            prop_assert_eq!(parsed, names.iter().map(|n| n.to_ascii_uppercase()).collect::<Vec<_>>());
            prop_assert_eq!(parse_path(&path.to_lowercase()), parse_path(&path.to_uppercase()));
        }

        /// Whatever string comes in, parsing never panics, and what it accepts is 8.3 only.
        #[test]
        fn anything_accepted_is_8_3(rest in "[A-Za-z0-9./ *?~]{0,40}|\\PC{0,40}") {
            let path = format!("/{rest}");
            if let Ok(parts) = parse_path(&path) {
                for p in parts {
                    let (n, e) = p.split_once('.').unwrap_or((&p, ""));
                    prop_assert!((1..=8).contains(&n.len()) && e.len() <= 3, "{}", p);
                    prop_assert!(p != "." && p != "..");
                    prop_assert!(!p.chars().any(|c| c.is_ascii_lowercase() || c == '/' || c == ' '));
                }
            }
        }

        /// Names longer than 8, extensions longer than 3 are always rejected.
        #[test]
        fn overlong_parts_are_rejected(n in part(9..=20), e in part(4..=8)) {
            let overlong_name = format!("/{}", n);
            let overlong_ext = format!("/a.{}", e);
            prop_assert!(parse_path(&overlong_name).is_err());
            prop_assert!(parse_path(&overlong_ext).is_err());
        }
    }
}
