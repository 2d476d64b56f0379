//! The registry of every upcaster the domain needs. Empty while no stored
//! event shape has changed.

use crate::es::upcast::Upcasters;

pub fn upcasters() -> Upcasters {
    Upcasters::default()
}
