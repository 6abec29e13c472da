-- The most frequent non-missing value of one line column per customer (ties: the
-- smallest value). Joined into transactions.sql; reads its `lines`.
SELECT customer_id, value AS mode_value
FROM (
    SELECT
        customer_id,
        value,
        ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY n DESC, value ASC) AS place
    FROM (
        SELECT customer_id, value, COUNT(*) AS n
        FROM (
            SELECT customer_id, CAST($column AS VARCHAR) AS value
            FROM lines
            WHERE $column IS NOT NULL
        ) AS line_values
        GROUP BY customer_id, value
    ) AS counts
) AS ranked
WHERE place = 1
