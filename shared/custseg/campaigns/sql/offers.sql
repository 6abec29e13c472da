-- What to offer: each segment's categories against the base, and each customer's top
-- offers. Relations: "orders" (the clean order-log parts), "assignments" (customer_id,
-- segment_id). $category: the category column (quoted); $min_buyers: the buyers a
-- category needs in a segment before its lift counts; $candidates: the categories per
-- segment considered for a customer.
CREATE TEMPORARY TABLE bought AS
SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id,
       NULLIF(TRIM(CAST($category AS VARCHAR)), '') AS category
FROM orders
WHERE $category IS NOT NULL AND NOT $is_return;

CREATE TEMPORARY TABLE seg AS
SELECT CAST(customer_id AS VARCHAR) AS customer_id, CAST(segment_id AS INTEGER) AS segment_id
FROM assignments;

-- per segment and category: buyers, the segment's share buying it, the base's, lift
CREATE TEMPORARY TABLE profile AS
WITH sizes AS (SELECT segment_id, COUNT(*) AS customers FROM seg GROUP BY segment_id),
base AS (SELECT COUNT(*) AS customers FROM seg),
seg_cat AS (
    SELECT s.segment_id, b.category, COUNT(*) AS buyers
    FROM bought AS b JOIN seg AS s ON s.customer_id = b.customer_id
    WHERE b.category IS NOT NULL
    GROUP BY s.segment_id, b.category
),
base_cat AS (SELECT category, SUM(buyers) AS buyers FROM seg_cat GROUP BY category)
SELECT sc.segment_id, sc.category, sc.buyers,
       CAST(sc.buyers AS DOUBLE) / sz.customers AS share,
       CAST(bc.buyers AS DOUBLE) / base.customers AS base_share,
       (CAST(sc.buyers AS DOUBLE) / sz.customers)
         / (CAST(bc.buyers AS DOUBLE) / base.customers) AS lift
FROM seg_cat AS sc
JOIN sizes AS sz ON sz.segment_id = sc.segment_id
JOIN base_cat AS bc ON bc.category = sc.category
CROSS JOIN base;

-- each segment's candidates, best first: categories it buys more than the base (with
-- enough buyers) by share, then the rest by share; then the base's most bought
CREATE TEMPORARY TABLE ranked AS
WITH own AS (
    SELECT segment_id, category, ROW_NUMBER() OVER (
        PARTITION BY segment_id
        ORDER BY (lift > 1 AND buyers >= $min_buyers) DESC, share DESC, category
    ) AS rank
    FROM profile
),
popular AS (
    SELECT category, ROW_NUMBER() OVER (ORDER BY SUM(buyers) DESC, category) AS rank
    FROM profile GROUP BY category
),
segments AS (SELECT DISTINCT segment_id FROM seg),
merged AS (
    SELECT segment_id, category, rank FROM own WHERE rank <= $candidates
    UNION ALL
    SELECT s.segment_id, p.category, $candidates + p.rank
    FROM segments AS s CROSS JOIN popular AS p
    WHERE p.rank <= $candidates
)
SELECT segment_id, category, MIN(rank) AS rank FROM merged GROUP BY segment_id, category;
