-- ListRetirableGrants reads one page of a retiring principal's grants, in creation order,
-- after the grant its marker names. Another account may name any principal as a grant's
-- retiring principal, so the list can be long; this index reads only the page. Additive.
CREATE INDEX grants_by_retiring_in_order ON grants (retiring_principal, created_at, grant_id);
