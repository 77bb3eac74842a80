// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// An ERC-20 whose balances mapping is not at slot 0: five other state variables come first, so
/// `balanceOf[holder]` lives at keccak256(abi.encode(holder, uint256(5))). A slot-level proof
/// needs to be told that; a proof of `balanceOf(holder)` does not.
contract ShiftedToken {
    address public owner; // slot 0
    string public name = "shifted"; // slot 1
    string public symbol = "SHF"; // slot 2
    uint256 public totalSupply; // slot 3
    mapping(address => mapping(address => uint256)) public allowance; // slot 4
    mapping(address => uint256) public balanceOf; // slot 5

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(uint256 supply) {
        owner = msg.sender;
        balanceOf[msg.sender] = supply;
        totalSupply = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        require(balanceOf[msg.sender] >= value, "balance");
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }
}
