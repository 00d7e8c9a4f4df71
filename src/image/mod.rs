//! Writers of appliance artefacts and the tree they share.

pub mod cpio;
pub mod ext2;
pub mod files;
pub mod hostfile;
pub mod initrd;
pub mod scratch;
pub mod tarball;
