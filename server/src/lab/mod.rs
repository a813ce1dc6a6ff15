//! The continuity lab: an impairment relay (`impair`, `relay`), scenarios (`scenario`), a
//! player population (`population`), the runner (`run`) and its outputs (`summary`, `plot`).

pub mod impair;
pub mod relay;
