//! The on-disk layout both nodes keep objects in (the origin's data dir, the edge's cache):
//! one directory per object, named after its name's components. Neither node reads the
//! other's files; they only agree on this shape.

use std::path::{Path, PathBuf};

use segue_wire::ObjectName;

/// Where an object's files live under `root`: its name's components, then `.segue` (a name no
/// object component can have), so object `a`'s files never collide with object `a/b`'s directory.
pub fn object_dir(root: &Path, name: &ObjectName) -> PathBuf {
    name.components()
        .fold(root.to_path_buf(), |d, c| d.join(c))
        .join(".segue")
}
