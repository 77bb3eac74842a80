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
    let mut reopened = Volume::open(v.into_image()).expect("reopen");
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
    let before = v.image().to_vec();
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
    assert_eq!(v.image(), before.as_slice(), "a rejected write changed the image");
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
    let before = v.image().to_vec();
    let err = v.write("/huge.bin", &vec![7u8; MIN_SIZE as usize]).expect_err("too big");
    assert_eq!(err, VfsError::Full);
    assert_eq!(v.image(), before.as_slice(), "a failed write changed the image");
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

/// The image is a valid FAT-16 volume to independent tools: `fsck.fat` (dosfstools) checks it,
/// and `mtype` (mtools) reads a file back. `scripts/test.sh` installs both.
#[test]
fn images_pass_fsck_fat_and_mtools() {
    let mut v = Volume::format(DEFAULT_SIZE).expect("format");
    v.write("/var/share/proofs/t1.bin", &[9u8; 100_000]).expect("write");
    v.write("/logs/run.log", b"hello from zkcoproc\n").expect("write");
    v.write("/tmp/gone.txt", b"x").expect("write");
    v.remove("/tmp/gone.txt").expect("remove");
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("volume.img");
    std::fs::write(&img, v.image()).expect("write image");

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
        .arg("::/LOGS/RUN.LOG")
        .output()
        .expect("mtype must be installed (apt-get install mtools)");
    assert!(mtype.status.success(), "{}", String::from_utf8_lossy(&mtype.stderr));
    assert_eq!(mtype.stdout, b"hello from zkcoproc\n");
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
