-- Each customer's top offers: their segment's candidates (see offers.sql) they have not
-- bought, best first, at most $top.
SELECT customer_id, segment_id, category, rank
FROM (
    SELECT s.customer_id, s.segment_id, r.category, r.rank,
           ROW_NUMBER() OVER (PARTITION BY s.customer_id ORDER BY r.rank) AS pick
    FROM seg AS s
    JOIN ranked AS r ON r.segment_id = s.segment_id
    WHERE NOT EXISTS (
        SELECT 1 FROM bought AS b
        WHERE b.customer_id = s.customer_id AND b.category = r.category
    )
) AS picks
WHERE pick <= $top
ORDER BY customer_id, rank
