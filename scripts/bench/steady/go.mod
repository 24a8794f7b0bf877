module userservice/scripts/bench/steady

go 1.19
