module github.com/dlock-go/dlock/tests

go 1.26.0

replace github.com/dlock-go/dlock => ../
