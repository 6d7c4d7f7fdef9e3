-- Orders per (shop, customer, status), kept by triggers in the transaction of every change, so a
-- customer's tab counts and an admin's username search read a few rows instead of counting every
-- matching order. Orders without a customer are not counted here.

CREATE TABLE order_counts (
    shop_id     UUID NOT NULL,
    customer_id UUID NOT NULL,
    status      TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (shop_id, customer_id, status)
);

INSERT INTO order_counts (shop_id, customer_id, status, n)
SELECT shop_id, customer_id, status, count(*) FROM orders
WHERE customer_id IS NOT NULL GROUP BY shop_id, customer_id, status;

-- A status change takes the old status's row before the new one's, and every change starts from
-- PENDING or a creation, so concurrent changes lock these rows in one order.
CREATE FUNCTION order_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.customer_id IS NOT NULL THEN
            UPDATE order_counts SET n = n - 1
            WHERE shop_id = OLD.shop_id AND customer_id = OLD.customer_id AND status = OLD.status;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.customer_id IS NOT NULL THEN
            INSERT INTO order_counts (shop_id, customer_id, status, n)
            VALUES (NEW.shop_id, NEW.customer_id, NEW.status, 1)
            ON CONFLICT (shop_id, customer_id, status) DO UPDATE SET n = order_counts.n + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER order_counts_insert_delete AFTER INSERT OR DELETE ON orders
FOR EACH ROW EXECUTE FUNCTION order_counts_track();

CREATE TRIGGER order_counts_update AFTER UPDATE OF status, customer_id ON orders
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.customer_id IS DISTINCT FROM NEW.customer_id)
EXECUTE FUNCTION order_counts_track();
