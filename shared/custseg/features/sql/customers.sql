-- Customer-table features: one row per customer (the last row of a repeated id in
-- reading order), numbers, booleans as 0/1, dates as whole days before the as-of date,
-- categories as trimmed lower-case text. Rendered by custseg.features.sql: the select
-- list reads the columns of `source_row`.
WITH last_rows AS (
    SELECT CAST($customer_id AS VARCHAR) AS customer_id, MAX($row_order) AS last_row
    FROM $source
    WHERE $customer_id IS NOT NULL
    GROUP BY CAST($customer_id AS VARCHAR)
)
SELECT last_rows.customer_id AS customer_id$select_columns
FROM $source AS source_row
JOIN last_rows ON source_row.$row_order = last_rows.last_row
ORDER BY last_rows.customer_id
