//! Returning free memory to the OS: how long free pages wait (`pace`) and the background
//! thread that returns them while the program's threads are idle (`purger`).

pub(crate) mod pace;
pub(crate) mod purger;
