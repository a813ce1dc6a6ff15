//! The continuity lab: an impairment relay (`impair`, `relay`), scenarios (`scenario`), a
//! player population (`population`), the runner (`run`) and its outputs (`summary`, `plot`).

pub mod bulk;
pub mod fabric;
pub mod hls;
pub mod impair;
pub mod matrix;
pub mod netns;
pub mod nodes;
pub mod plot;
pub mod population;
pub mod relay;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod summary;
