module gotoken

go 1.19
