<?php
function leave() { exit(3); }
leave();
echo "not reached\n";
