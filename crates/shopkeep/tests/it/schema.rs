//! Both engines' migrations end in the same tables, columns and indexes.

use shopkeep_store::Db;
use shopkeep_store::schema::table_difference;

use crate::both_engines;
use crate::harness::{Engine, TestStorage, postgres_enabled};

async fn migrated(engine: Engine) -> (TestStorage, Db) {
    let storage = TestStorage::new(engine).await;
    let config = storage.config();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let db = Db::connect(&config.db_options()).await.unwrap();
    db.migrate().await.unwrap();
    (storage, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_end_with_the_same_tables_columns_and_indexes() {
    assert!(
        postgres_enabled(),
        "this test compares SQLite with PostgreSQL; set TEST_POSTGRES_URL (scripts/test does)"
    );
    let (_s1, sqlite) = migrated(Engine::Sqlite).await;
    let (_s2, pg) = migrated(Engine::Postgres).await;
    let a = sqlite.schema().await.unwrap();
    let b = pg.schema().await.unwrap();
    assert!(!a.tables.is_empty());
    assert!(
        table_difference(&a, &b).is_empty(),
        "tables only on one engine: {:?}",
        table_difference(&a, &b)
    );
    for (name, shape) in &a.tables {
        assert_eq!(
            Some(shape),
            b.tables.get(name),
            "table {name} differs between SQLite and PostgreSQL"
        );
    }
}

both_engines!(migrating_twice_changes_nothing);

async fn migrating_twice_changes_nothing(engine: Engine) {
    let (_s, db) = migrated(engine).await;
    let before = db.schema().await.unwrap();
    let second = db.migrate().await.unwrap();
    assert!(second.pending.is_empty());
    assert!(db.migration_status().await.unwrap().is_current());
    assert_eq!(db.schema().await.unwrap(), before);
}
