-- Order-log features per customer (see custseg.features.build for the definitions).
-- Rendered by custseg.features.sql: its placeholders are quoted column names, SQL
-- expressions built from the contract, or the as-of date; the rest is plain SQL that
-- DuckDB and Athena (Trino) both run.
WITH lines AS (
    -- events strictly before the as-of date, with a known customer
    SELECT
        CAST($customer_id AS VARCHAR) AS customer_id,
        CAST($event_time AS DATE) AS event_day,
        $order_key AS order_key,
        COALESCE($amount, 0.0) AS amount,
        ($return_flag OR COALESCE($amount, 0.0) < 0) AS is_return$line_columns
    FROM $source
    WHERE $event_time < TIMESTAMP '$as_of 00:00:00'
      AND $customer_id IS NOT NULL
),
per_customer AS (
    SELECT
        customer_id,
        FSUM(CASE WHEN is_return THEN 0.0 ELSE GREATEST(amount, 0.0) END) AS gross,
        FSUM(CASE WHEN is_return THEN ABS(amount) ELSE 0.0 END) AS returned,
        MIN(event_day) AS first_day,
        MAX(event_day) AS last_day,
        MIN(CASE WHEN is_return THEN NULL ELSE event_day END) AS first_buy,
        MAX(CASE WHEN is_return THEN NULL ELSE event_day END) AS last_buy
    FROM lines
    GROUP BY customer_id
),
orders AS (
    -- an order is a distinct order key with at least one purchase line
    SELECT customer_id, COUNT(*) AS frequency
    FROM (
        SELECT DISTINCT customer_id, order_key
        FROM lines
        WHERE NOT is_return AND order_key IS NOT NULL
    ) AS distinct_orders
    GROUP BY customer_id
),
spans AS (
    -- a customer with only returns is measured from their returns
    SELECT
        p.customer_id,
        CAST(p.gross AS DOUBLE) AS gross,
        CAST(p.returned AS DOUBLE) AS returned,
        CAST(COALESCE(o.frequency, 0) AS DOUBLE) AS frequency,
        CAST(date_diff('day', COALESCE(p.last_buy, p.last_day), DATE '$as_of') AS DOUBLE)
            AS recency_days,
        CAST(date_diff('day', COALESCE(p.first_buy, p.first_day), DATE '$as_of') AS DOUBLE)
            AS tenure_days
    FROM per_customer AS p
    LEFT JOIN orders AS o ON o.customer_id = p.customer_id
)
SELECT
    spans.customer_id AS customer_id,
    spans.recency_days AS recency_days,
    spans.frequency AS frequency,
    spans.gross - spans.returned AS monetary,
    CASE WHEN spans.frequency > 0 THEN spans.gross / spans.frequency
         ELSE CAST(0 AS DOUBLE) END AS avg_order_value,
    spans.tenure_days AS tenure_days,
    CASE WHEN spans.frequency >= 2
         THEN (spans.tenure_days - spans.recency_days) / (spans.frequency - 1)
         ELSE spans.tenure_days END AS mean_interval_days,
    CASE WHEN spans.gross > 0
         THEN LEAST(GREATEST(spans.returned / spans.gross, CAST(0 AS DOUBLE)), CAST(1 AS DOUBLE))
         WHEN spans.returned > 0 THEN CAST(1 AS DOUBLE)
         ELSE CAST(0 AS DOUBLE) END AS return_share$per_customer_columns
FROM spans$per_customer_joins
ORDER BY spans.customer_id
