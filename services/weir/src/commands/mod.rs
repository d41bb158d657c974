pub mod check;
pub mod gateway;
pub mod rollup;
pub mod rules;
pub mod schema;
pub mod tail;
pub mod topics;
pub mod tsdb_writer;
