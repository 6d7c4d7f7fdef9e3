-- Orders per (shop, customer, status), kept by triggers in the transaction of every change, so a
-- customer's tab counts and an admin's username search read a few rows instead of counting every
-- matching order. Orders without a customer are not counted here.

CREATE TABLE order_counts (
    shop_id     BLOB NOT NULL,
    customer_id BLOB NOT NULL,
    status      TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (shop_id, customer_id, status)
) WITHOUT ROWID;

INSERT INTO order_counts (shop_id, customer_id, status, n)
SELECT shop_id, customer_id, status, count(*) FROM orders
WHERE customer_id IS NOT NULL GROUP BY shop_id, customer_id, status;

CREATE TRIGGER order_counts_insert AFTER INSERT ON orders WHEN NEW.customer_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO order_counts (shop_id, customer_id, status, n)
    VALUES (NEW.shop_id, NEW.customer_id, NEW.status, 0);
    UPDATE order_counts SET n = n + 1
    WHERE shop_id = NEW.shop_id AND customer_id = NEW.customer_id AND status = NEW.status;
END;

CREATE TRIGGER order_counts_update AFTER UPDATE OF status, customer_id ON orders
WHEN OLD.status IS NOT NEW.status OR OLD.customer_id IS NOT NEW.customer_id
BEGIN
    UPDATE order_counts SET n = n - 1
    WHERE shop_id = OLD.shop_id AND customer_id = OLD.customer_id AND status = OLD.status;
    INSERT OR IGNORE INTO order_counts (shop_id, customer_id, status, n)
    SELECT NEW.shop_id, NEW.customer_id, NEW.status, 0 WHERE NEW.customer_id IS NOT NULL;
    UPDATE order_counts SET n = n + 1
    WHERE shop_id = NEW.shop_id AND customer_id = NEW.customer_id AND status = NEW.status;
END;

CREATE TRIGGER order_counts_delete AFTER DELETE ON orders WHEN OLD.customer_id IS NOT NULL
BEGIN
    UPDATE order_counts SET n = n - 1
    WHERE shop_id = OLD.shop_id AND customer_id = OLD.customer_id AND status = OLD.status;
END;
