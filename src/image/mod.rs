//! Writers of appliance artefacts and the tree they share.

pub(crate) mod cpio;
pub(crate) mod ext2;
pub(crate) mod files;
pub(crate) mod holes;
pub(crate) mod hostfile;
pub mod initrd;
pub(crate) mod scratch;
pub(crate) mod tarball;
pub(crate) mod vmlinux;
