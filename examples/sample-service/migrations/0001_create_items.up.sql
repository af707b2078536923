CREATE TABLE items (
    id serial PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 200) AS g;
