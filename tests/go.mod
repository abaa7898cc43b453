module github.com/dlock-go/dlock/tests

go 1.25.0

replace github.com/dlock-go/dlock => ../
