-- The order lines of transactions.sql before the end date, then a query of them (see
-- custseg.features.sql: the history of history.sql grouped for the holdout check, or the
-- first purchase day).
WITH lines AS (
    SELECT
        CAST($customer_id AS VARCHAR) AS customer_id,
        CAST($event_time AS DATE) AS event_day,
        COALESCE($amount, 0.0) AS amount,
        ($return_flag OR COALESCE($amount, 0.0) < 0) AS is_return
    FROM $source
    WHERE $event_time < TIMESTAMP '$end 00:00:00'
      AND $customer_id IS NOT NULL
)
$query
