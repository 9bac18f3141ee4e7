//! Guest root filesystem images: a newc cpio writer and build profiles.
