//! `make images` (deploy/images/build-images.py): the archives in target/images are reproducible, hold what
//! the binaries need and nothing to run besides them, and match deploy/docker/*.Dockerfile (same binary
//! path, user, entrypoint, ports). That containerd accepts them is proven by the node tests, which import
//! them with `ctr images import` and run them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration::{cache_dir, workspace_root};
use serde_json::Value;

const NAMES: [&str; 3] = ["webhook", "credproxy", "gateway"];

/// A tar stream's entries: path → (mode, uid, gid, content or link target).
type TarEntries = BTreeMap<String, (u32, u64, u64, Vec<u8>)>;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn archive(name: &str) -> PathBuf {
    let path = target_dir().join("images").join(format!("{name}.tar"));
    assert!(
        path.exists(),
        "{} missing: run `make images` (make test does)",
        path.display()
    );
    path
}

/// The entries of a tar stream: path → (mode, uid, gid, content or link target).
fn tar_entries(data: &[u8]) -> TarEntries {
    let mut entries = BTreeMap::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    while pos + 512 <= data.len() && data[pos] != 0 {
        let header = &data[pos..pos + 512];
        let field = |from: usize, len: usize| {
            let raw = &header[from..from + len];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(len);
            String::from_utf8_lossy(&raw[..end]).trim().to_string()
        };
        let octal =
            |from: usize, len: usize| u64::from_str_radix(&field(from, len), 8).unwrap_or(0);
        let size = octal(124, 12) as usize;
        let kind = header[156];
        let body = data[pos + 512..pos + 512 + size].to_vec();
        pos += 512 + size.div_ceil(512) * 512;
        if kind == b'L' {
            long_name = Some(
                String::from_utf8_lossy(&body)
                    .trim_end_matches('\0')
                    .to_string(),
            );
            continue;
        }
        let prefix = field(345, 155);
        let name = long_name.take().unwrap_or_else(|| {
            if prefix.is_empty() {
                field(0, 100)
            } else {
                format!("{prefix}/{}", field(0, 100))
            }
        });
        let content = if kind == b'2' {
            field(157, 100).into_bytes()
        } else {
            body
        };
        entries.insert(
            name.trim_end_matches('/').to_string(),
            (octal(100, 8) as u32, octal(108, 8), octal(116, 8), content),
        );
    }
    entries
}

fn read(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    data
}

struct Image {
    config: Value,
    layers: Vec<TarEntries>,
    unpacked_bytes: usize,
}

fn open_image(name: &str) -> Image {
    let outer = tar_entries(&read(&archive(name)));
    let docker_manifest: Value = serde_json::from_slice(&outer["manifest.json"].3).unwrap();
    let entry = &docker_manifest[0];
    assert_eq!(
        entry["RepoTags"][0],
        format!("ghcr.io/podcred/{name}:{}", env!("CARGO_PKG_VERSION"))
    );
    let index: Value = serde_json::from_slice(&outer["index.json"].3).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        entry["RepoTags"][0]
    );
    let config: Value =
        serde_json::from_slice(&outer[entry["Config"].as_str().unwrap()].3).unwrap();
    let mut unpacked_bytes = 0;
    let layers = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let blob = &outer[l.as_str().unwrap()].3;
            let entries = tar_entries(blob);
            unpacked_bytes += entries.values().map(|e| e.3.len()).sum::<usize>();
            entries
        })
        .collect();
    Image {
        config,
        layers,
        unpacked_bytes,
    }
}

#[test]
#[ignore = "needs make images: run make test"]
fn images_hold_the_binary_its_libraries_and_ca_roots_and_no_shell() {
    for name in NAMES {
        let image = open_image(name);
        let config = &image.config["config"];
        assert_eq!(config["User"], "65532:65532", "{name}");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!([format!("/{name}")])
        );
        let files: BTreeMap<&String, &(u32, u64, u64, Vec<u8>)> =
            image.layers.iter().flat_map(|l| l.iter()).collect();
        let (mode, uid, _, binary) = files[&name.to_string()];
        assert_eq!(
            (mode & 0o777, *uid),
            (0o755, 0),
            "{name}: /{name} mode/owner"
        );
        let release = read(&target_dir().join("release").join(name));
        assert!(
            binary == &release,
            "{name}: /{name} is not the release binary"
        );
        for absent in [
            "bin/sh",
            "bin/bash",
            "bin/busybox",
            "usr/bin/apt",
            "usr/bin/dpkg",
        ] {
            assert!(
                !files.contains_key(&absent.to_string()),
                "{name}: has {absent}"
            );
        }
        let bundle = &files[&"etc/ssl/certs/ca-certificates.crt".to_string()].3;
        let certificates = String::from_utf8_lossy(bundle)
            .matches("BEGIN CERTIFICATE")
            .count();
        assert!(certificates > 100, "{name}: {certificates} CA certificates");
        let passwd = String::from_utf8_lossy(&files[&"etc/passwd".to_string()].3).into_owned();
        assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
        // Every library the binary loads (ldd on the host, Debian 12 like the base) is in the image.
        let ldd = Command::new("ldd")
            .arg(target_dir().join("release").join(name))
            .output()
            .expect("run ldd");
        let ldd = String::from_utf8_lossy(&ldd.stdout);
        for library in ldd.lines().filter_map(|l| l.split_whitespace().next()) {
            if library.starts_with("linux-vdso") {
                continue;
            }
            let base = Path::new(library)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let present = files.keys().any(|path| {
                path.ends_with(&format!("/{base}"))
                    && (path.starts_with("lib/")
                        || path.starts_with("lib64/")
                        || path.starts_with("usr/lib/"))
            });
            assert!(present, "{name}: needs {library} (ldd), not in the image");
        }
        assert!(
            image.unpacked_bytes < 80 << 20,
            "{name}: {} bytes unpacked",
            image.unpacked_bytes
        );
        eprintln!(
            "{name}: {:.1} MiB unpacked ({:.1} MiB archive)",
            image.unpacked_bytes as f64 / 1048576.0,
            read(&archive(name)).len() as f64 / 1048576.0
        );
    }
}

#[test]
#[ignore = "needs make images: run make test"]
fn rebuilding_the_images_gives_bit_identical_archives() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(workspace_root().join("deploy/images/build-images.py"))
        .arg("--bin-dir")
        .arg(target_dir().join("release"))
        .arg("--out")
        .arg(out.path())
        .args(["--tag", env!("CARGO_PKG_VERSION")])
        .arg("--debs")
        .arg(cache_dir().join("debs"))
        .status()
        .expect("run build-images.py");
    assert!(status.success());
    for name in NAMES {
        let again = read(&out.path().join(format!("{name}.tar")));
        assert!(
            again == read(&archive(name)),
            "{name}.tar differs between two builds of the same checkout"
        );
    }
}

#[test]
#[ignore = "needs make images: run make test"]
fn the_dockerfiles_build_the_same_layout() {
    for name in NAMES {
        let dockerfile = std::fs::read_to_string(
            workspace_root().join(format!("deploy/docker/{name}.Dockerfile")),
        )
        .unwrap();
        let image = open_image(name);
        let config = &image.config["config"];
        assert!(
            dockerfile.contains("FROM gcr.io/distroless/cc-debian12:nonroot"),
            "{name}"
        );
        assert!(
            dockerfile.contains(&format!("COPY --from=build /out/{name} /{name}\n")),
            "{name}"
        );
        assert!(dockerfile.contains("USER 65532:65532\n"), "{name}");
        assert!(
            dockerfile.contains(&format!("ENTRYPOINT [\"/{name}\"]\n")),
            "{name}"
        );
        let exposed: Vec<String> = config["ExposedPorts"]
            .as_object()
            .unwrap()
            .keys()
            .map(|p| p.trim_end_matches("/tcp").to_string())
            .collect();
        let expose_line = dockerfile
            .lines()
            .find(|l| l.starts_with("EXPOSE "))
            .unwrap_or_else(|| panic!("{name}: no EXPOSE"));
        let mut in_dockerfile: Vec<String> = expose_line[7..]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        in_dockerfile.sort();
        let mut exposed = exposed;
        exposed.sort();
        assert_eq!(in_dockerfile, exposed, "{name}: EXPOSE vs image config");
    }
}
