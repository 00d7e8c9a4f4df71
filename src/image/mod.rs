//! Writers of appliance artefacts and the tree they share.

pub mod cpio;
pub mod ext2;
pub mod files;
pub mod initrd;
pub mod tarball;
