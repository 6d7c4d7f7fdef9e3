//! End-to-end tests: the real application on port 0, on SQLite and on PostgreSQL.

mod harness;

mod auth;
mod binary;
mod faults;
mod health;
mod jobs;
mod jobs_process;
mod jobs_store;
mod load;
mod orders;
mod orders_store;
mod process;
mod schema;
mod sessions;
mod tenancy;
mod web;
mod webhooks;
mod webhooks_store;
