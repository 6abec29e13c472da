-- Repeat-purchase history per customer, in days, for the BG/NBD and Gamma-Gamma
-- predictions (custseg.predict.clv). Reads `lines` (the order lines of transactions.sql
-- or holdout.sql). A purchase is a day with at least one purchase line (several orders on
-- one day are one purchase), its value the day's gross purchase amount. Only purchases
-- before the cutoff date count in the history; customers whose first purchase is on or
-- after it are left out; purchase days on or after it are the holdout purchases.
SELECT
    customer_id,
    CAST(SUM(CASE WHEN event_day < DATE '$cutoff' THEN 1 ELSE 0 END) - 1 AS DOUBLE)
        AS _clv_frequency,
    CAST(date_diff('day', MIN(first_day),
                   MAX(CASE WHEN event_day < DATE '$cutoff' THEN event_day END)) AS DOUBLE)
        AS _clv_recency,
    CAST(date_diff('day', MIN(first_day), DATE '$cutoff') AS DOUBLE) AS _clv_age,
    FSUM(CASE WHEN event_day < DATE '$cutoff' AND event_day > first_day THEN day_value END)
        / NULLIF(SUM(CASE WHEN event_day < DATE '$cutoff' THEN 1 ELSE 0 END) - 1, 0)
        AS _clv_monetary,
    CAST(SUM(CASE WHEN event_day >= DATE '$cutoff' THEN 1 ELSE 0 END) AS DOUBLE)
        AS _clv_holdout
FROM (
    SELECT
        customer_id,
        event_day,
        FSUM(GREATEST(amount, 0.0)) AS day_value,
        MIN(event_day) OVER (PARTITION BY customer_id) AS first_day
    FROM lines
    WHERE NOT is_return
    GROUP BY customer_id, event_day
) AS purchase_days
WHERE first_day < DATE '$cutoff'
GROUP BY customer_id
