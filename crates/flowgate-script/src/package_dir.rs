//! Reading flow packages from folders on disk (`scripts/<flow>/`).

use flowgate_core::manifest::{is_plain_file_name, MANIFEST_FILE};
use flowgate_core::FlowPackage;
use std::path::{Path, PathBuf};

/// Reads a package folder: its plain top-level files and `tests/*.json`.
/// Hidden files and other sub-folders are skipped.
pub fn read_package_dir(dir: &Path) -> std::io::Result<FlowPackage> {
    let mut pkg = FlowPackage::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type()?;
        if ft.is_file() && is_plain_file_name(&name) {
            pkg.files
                .insert(name, std::fs::read_to_string(entry.path())?);
        } else if ft.is_dir() && name == "tests" {
            for t in std::fs::read_dir(entry.path())? {
                let t = t?;
                let tname = t.file_name().to_string_lossy().into_owned();
                if t.file_type()?.is_file()
                    && is_plain_file_name(&tname)
                    && tname.ends_with(".json")
                {
                    pkg.files
                        .insert(format!("tests/{tname}"), std::fs::read_to_string(t.path())?);
                }
            }
        }
    }
    Ok(pkg)
}

/// The package folders under `path`: `path` itself when it holds `flow.toml`,
/// otherwise its sub-folders that do, in name order.
pub fn find_package_dirs(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.join(MANIFEST_FILE).is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}
