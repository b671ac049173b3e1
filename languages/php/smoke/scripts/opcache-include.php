<?php
// Included by opcache.php: its compiled form must land in the file cache.
function kiln_opcache_included(): string
{
    return 'included ok';
}
