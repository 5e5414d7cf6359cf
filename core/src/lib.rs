//! tinypoet-core: placeholder, being written (issue 2).
#![no_std]
