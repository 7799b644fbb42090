//! LVM2 physical volumes and their linear logical volumes (being written).
