//! Operator commands on a data directory: `debrief check`, `backup` and `restore`, and the admin
//! socket a running server answers them on.

pub mod admin;
pub mod backup;
pub mod check;
